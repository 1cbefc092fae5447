package fuse_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// TestUnsyncedFlushKeepsPendingLog: the background flusher writes LTX files
// without a sync, so the pending log must keep their change sets until the
// checkpoint syncs them. A copy of the data directory taken before the
// checkpoint, with the unsynced files lost as a power failure would lose
// them, recovers every acknowledged commit from the pending log; closing
// the store syncs the files and empties the pending log.
func TestUnsyncedFlushKeepsPendingLog(t *testing.T) {
	data := t.TempDir()
	m := mountOpts(t, data, ferry.StoreOptions{CheckpointDelay: time.Hour}, nil)
	db := openDB(t, m.path("c.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for range 3 {
		mustExec(t, db, "INSERT INTO t (v) VALUES (randomblob(200))")
	}
	want, err := m.store.Pos("c.db")
	if err != nil {
		t.Fatal(err)
	}
	// The flusher writes the change sets to the LTX log in the background.
	wantName := ferry.LTXFilename(want.TXID, want.TXID)
	for i := 0; ; i++ {
		if newestLTX(t, m.layout, "c.db") >= want.TXID {
			break
		}
		if i == 1000 {
			t.Fatalf("no LTX file reaches TXID %s (want a file like %s)", want.TXID, wantName)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi, err := os.Stat(m.layout.PendingPath("c.db")); err != nil || fi.Size() == 0 {
		t.Fatalf("pending log is empty or missing (%v) while its LTX files are unsynced", err)
	}

	// A power failure before the checkpoint: the unsynced files are lost.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(data)); err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: crashed}
	recorded, err := os.ReadFile(layout.PosPath("c.db"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var recordedTXID ltx.TXID
	if len(recorded) > 0 {
		pos, err := ferry.ParsePos(strings.TrimSpace(string(recorded)))
		if err != nil {
			t.Fatal(err)
		}
		recordedTXID = pos.TXID
	}
	ents, err := os.ReadDir(layout.LTXDir("c.db"))
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, e := range ents {
		_, max, err := ferry.ParseLTXFilename(e.Name())
		if err == nil && max > recordedTXID {
			if err := os.Truncate(filepath.Join(layout.LTXDir("c.db"), e.Name()), 0); err != nil {
				t.Fatal(err)
			}
			lost++
		}
	}
	if lost == 0 {
		t.Fatalf("no LTX file past the recorded position %q: the position file got ahead of the unsynced files", strings.TrimSpace(string(recorded)))
	}
	s := ferry.NewStore(layout, ferry.StoreOptions{})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pos("c.db")
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil || got != want {
		t.Fatalf("after losing %d unsynced LTX files the position is %s (%v); want %s from the pending log", lost, got, err, want)
	}

	// Closing syncs the files and empties the pending log.
	db.Close()
	m.close()
	if fi, err := os.Stat(m.layout.PendingPath("c.db")); err == nil && fi.Size() != 0 {
		t.Errorf("pending log holds %d bytes after a clean close", fi.Size())
	}
	if b, err := os.ReadFile(m.layout.PosPath("c.db")); err != nil || strings.TrimSpace(string(b)) != want.String() {
		t.Errorf("position file %q (%v) after a clean close; want %s", b, err, want)
	}
}

// newestLTX returns the highest TXID of the database's local LTX files.
func newestLTX(t *testing.T, layout ferry.Layout, name string) ltx.TXID {
	t.Helper()
	var newest ltx.TXID
	err := filepath.WalkDir(layout.LTXDir(name), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, max, err := ferry.ParseLTXFilename(d.Name()); err == nil && max > newest {
			newest = max
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return newest
}

// TestIdleDatabaseHoldsNoFiles: once a database stays idle the store closes
// the files it holds open for it (database, position, pending log), so that
// idle tenants cost no descriptors, and opens them again for the next
// commit.
func TestIdleDatabaseHoldsNoFiles(t *testing.T) {
	data := t.TempDir()
	m := mountOpts(t, data, ferry.StoreOptions{CheckpointDelay: 10 * time.Millisecond}, nil)
	db := openDB(t, m.path("idle.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, "INSERT INTO t (v) VALUES (randomblob(200))")
	if n := filesOpenUnder(t, data); n == 0 {
		t.Fatal("no file open under the data directory while the database is open")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; filesOpenUnder(t, data) > 0; i++ {
		if i == 1000 {
			t.Fatalf("%d files still open under the data directory for an idle database", filesOpenUnder(t, data))
		}
		time.Sleep(10 * time.Millisecond)
	}
	db = openDB(t, m.path("idle.db"), "delete", "full")
	mustExec(t, db, "INSERT INTO t (v) VALUES (randomblob(200))")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count after reopening: %d, %v; want 2", n, err)
	}
	want, err := m.store.Pos("idle.db")
	if err != nil || want.TXID < 3 {
		t.Fatalf("position %s (%v) after three commits", want, err)
	}
}

// filesOpenUnder counts this process's descriptors of files under dir.
func filesOpenUnder(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(os.PathSeparator)) {
			n++
		}
	}
	return n
}

// TestLargeTransactionSkipsPendingLog: a durable transaction of 1 MB or
// more is in its own synced LTX file when the commit returns, and never
// written to the pending log, where it would be written twice and held in
// memory until the flush.
func TestLargeTransactionSkipsPendingLog(t *testing.T) {
	m := mountOpts(t, t.TempDir(), ferry.StoreOptions{CheckpointDelay: time.Hour}, nil)
	db := openDB(t, m.path("big.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t (v) SELECT randomblob(1000) FROM n")
	pos, err := m.store.Pos("big.db")
	if err != nil {
		t.Fatal(err)
	}
	if got := newestLTX(t, m.layout, "big.db"); got != pos.TXID {
		t.Fatalf("newest LTX file ends at TXID %s when the commit returned; want %s", got, pos.TXID)
	}
	if fi, err := os.Stat(m.layout.PendingPath("big.db")); err == nil && fi.Size() != 0 {
		t.Fatalf("pending log holds %d bytes after a 2 MB transaction", fi.Size())
	}
	b, err := os.ReadFile(m.layout.PosPath("big.db"))
	if err != nil || strings.TrimSpace(string(b)) != pos.String() {
		t.Fatalf("position file %q (%v); want %s, recorded with the synced file", b, err, pos)
	}
}

// TestLocalLogCompactsUploadedFiles: once the bucket holds them, a
// database's local LTX files are merged into one, so that the local log
// keeps no file per transaction; the chain stays whole and a restart finds
// the same position.
func TestLocalLogCompactsUploadedFiles(t *testing.T) {
	data := t.TempDir()
	m := mountOpts(t, data, ferry.StoreOptions{KeepUntilUploaded: true, Retention: 10 * time.Second}, nil)
	db := openDB(t, m.path("many.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for range 12 {
		// Each transaction of 1 MB or more gets its own file at once.
		mustExec(t, db, "INSERT INTO t (v) VALUES (randomblob(1100000))")
	}
	db.Close()
	pos, err := m.store.Pos("many.db")
	if err != nil {
		t.Fatal(err)
	}
	before := countLTX(t, m.layout, "many.db")
	if before < 9 {
		t.Fatalf("%d LTX files before compaction; want one per large transaction", before)
	}
	// As the replicator records an upload.
	if err := os.WriteFile(m.layout.BucketPosPath("many.db"), []byte(pos.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; countLTX(t, m.layout, "many.db") > 2; i++ {
		if i == 1000 {
			t.Fatalf("%d LTX files remain; want the uploaded ones merged", countLTX(t, m.layout, "many.db"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.close()
	s := ferry.NewStore(m.layout, ferry.StoreOptions{})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Pos("many.db"); err != nil || got != pos {
		t.Fatalf("position after compaction and restart %s (%v); want %s", got, err, pos)
	}
}

// countLTX counts a database's local LTX files.
func countLTX(t *testing.T, layout ferry.Layout, name string) int {
	t.Helper()
	ents, err := os.ReadDir(layout.LTXDir(name))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, _, err := ferry.ParseLTXFilename(e.Name()); err == nil {
			n++
		}
	}
	return n
}
