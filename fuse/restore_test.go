package fuse_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/ferrydb/ferry"
)

// copyRestorer restores databases by copying them from another store.
type copyRestorer struct{ from *ferry.Store }

func (r copyRestorer) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	pos, err := r.from.Pos(name)
	if err != nil {
		return ferry.Pos{}, err
	}
	src, err := os.Open(r.from.Layout().DBPath(name))
	if err != nil {
		return ferry.Pos{}, err
	}
	defer src.Close()
	dst, err := os.Create(path)
	if err != nil {
		return ferry.Pos{}, err
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		return ferry.Pos{}, fmt.Errorf("copy: %w", err)
	}
	return pos, nil
}

func TestRestoreOnOpen(t *testing.T) {
	source := mount(t, t.TempDir(), nil)
	sdb := openDB(t, source.path("r.db"), "delete", "full")
	mustExec(t, sdb, "CREATE TABLE t (v)")
	for i := 0; i < 10; i++ {
		mustExec(t, sdb, "INSERT INTO t VALUES (?)", i)
	}
	sdb.Close()
	want := mustPos(t, source, "r.db")

	m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetRestorer(copyRestorer{from: source.store}) })
	if _, err := os.Stat(m.path("missing.db")); !os.IsNotExist(err) {
		t.Fatalf("missing database: %v", err)
	}
	db := openDB(t, m.path("r.db"), "delete", "full")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 10 {
		t.Fatalf("restored rows = %d, %v", n, err)
	}
	if got := mustPos(t, m, "r.db"); got != want {
		t.Fatalf("restored at %s, want %s", got, want)
	}
	mustExec(t, db, "INSERT INTO t VALUES (11)")
	if got := mustPos(t, m, "r.db"); got.TXID != want.TXID+1 {
		t.Fatalf("after a write at %s, want TXID %d", got, want.TXID+1)
	}
	db.Close()
	checkReplay(t, m, "r.db")
}

// TestRestoredThenDeletedStaysDeleted deletes a database restored on
// demand before anything was committed to it here: looking it up again
// must not bring the bucket's copy back.
func TestRestoredThenDeletedStaysDeleted(t *testing.T) {
	source := mount(t, t.TempDir(), nil)
	sdb := openDB(t, source.path("r.db"), "delete", "full")
	mustExec(t, sdb, "CREATE TABLE t (v)")
	sdb.Close()

	m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetRestorer(copyRestorer{from: source.store}) })
	if _, err := os.Stat(m.path("r.db")); err != nil {
		t.Fatalf("restore on demand: %v", err)
	}
	if err := os.Remove(m.path("r.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.path("r.db")); !os.IsNotExist(err) {
		t.Fatalf("deleted database after a new lookup: %v, want it gone", err)
	}
}
