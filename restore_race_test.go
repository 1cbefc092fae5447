package ferry

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// gatedRestorer restores from a copy of a database file, but only once
// gate is closed, telling entered when it starts.
type gatedRestorer struct {
	src     string
	pos     Pos
	entered chan struct{}
	gate    chan struct{}
}

func (r *gatedRestorer) Restore(ctx context.Context, name, path string) (Pos, error) {
	close(r.entered)
	<-r.gate
	in, err := os.Open(r.src)
	if err != nil {
		return Pos{}, err
	}
	defer in.Close()
	out, err := os.Create(path)
	if err != nil {
		return Pos{}, err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return Pos{}, err
	}
	return r.pos, nil
}

// TestRestoreOnOpenRacesApply: a node given a database's lease catches up
// from nothing (an apply that creates the database) while an application
// opens the same database, which restores it. Whichever comes second must
// take up the first one's file, not move its own over it: the store would
// go on reading an unlinked file while applications write the new one, and
// their commits would never be captured.
func TestRestoreOnOpenRacesApply(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	// The source: a database with history, and its first LTX file, a
	// snapshot, as the bucket would hand them out.
	src := t.TempDir()
	path := Layout{Dir: src}.DBPath("r.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	conn, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('a')"} {
		if _, err := conn.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	primary := NewStore(Layout{Dir: src}, StoreOptions{Logger: logger})
	if err := primary.Open(ctx); err != nil {
		t.Fatal(err)
	}
	pos, _ := primary.Pos("r.db")
	if err := primary.Close(); err != nil {
		t.Fatal(err)
	}
	snapshot, err := os.ReadFile(Layout{Dir: src}.LTXPath("r.db", 1, pos.TXID))
	if err != nil {
		t.Fatal(err)
	}

	rs := &gatedRestorer{src: path, pos: pos, entered: make(chan struct{}), gate: make(chan struct{})}
	replica := NewStore(Layout{Dir: t.TempDir()}, StoreOptions{Logger: logger})
	replica.SetRestorer(rs)
	if err := replica.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer replica.Close()

	restored := make(chan error, 1)
	go func() { restored <- replica.RestoreMissing(ctx, "r.db") }()
	<-rs.entered
	applied := make(chan error, 1)
	go func() {
		_, err := replica.ApplyLTX(ctx, "r.db", bytes.NewReader(snapshot))
		applied <- err
	}()
	// Let the apply run ahead if it can; either way the restore then
	// finishes.
	select {
	case <-applied:
		applied <- nil
	case <-time.After(2 * time.Second):
	}
	close(rs.gate)
	if err := <-restored; err != nil {
		t.Fatalf("restore on open: %v", err)
	}
	// The apply either created the database first or found the restored
	// one, whose position its snapshot does not continue.
	if err := <-applied; err != nil {
		t.Logf("apply after the restore: %v", err)
	}

	d := replica.DB("r.db")
	if d == nil {
		t.Fatal("r.db not in the store")
	}
	held, err := d.file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.Stat(replica.layout.DBPath("r.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(held, onDisk) {
		t.Fatal("the store reads a database file that is no longer the one at its path")
	}
	if got, _ := replica.Pos("r.db"); got != pos {
		t.Fatalf("replica at %s, want %s", got, pos)
	}
}
