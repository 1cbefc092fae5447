package fuse_test

import (
	"context"
	"os"
	"testing"
)

// TestWALWriteOutsideTransactionRefused writes to a WAL-mode database file
// through the mount as a tool such as dd would, outside any transaction.
// Only what a checkpoint writes, whole pages holding committed content, is
// let through; anything else is refused with EPERM before it reaches the
// TestWALWriteOutsideTransactionRepaired writes into a WAL-mode database
// file outside any transaction, the way dd would. The write is let
// through (SQLite's own tests swap database files under its locks), but
// the position never silently disagrees with the file: the checksum index
// is not saved, and the next start brings the log level with the file.
func TestWALWriteOutsideTransactionRepaired(t *testing.T) {
	dataDir := t.TempDir()
	m := mount(t, dataDir, nil)
	db := openDB(t, m.path("w.db"), "wal", "normal")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for range 20 {
		mustExec(t, db, "INSERT INTO t (v) VALUES (randomblob(300))")
	}
	mustExec(t, db, "PRAGMA wal_checkpoint(TRUNCATE)")
	before := mustPos(t, m, "w.db")

	f, err := os.OpenFile(m.path("w.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	if _, err := f.ReadAt(page, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(page, 4096); err != nil {
		t.Errorf("write of page 2 as committed: %v", err)
	}
	if _, err := f.WriteAt([]byte("sixteen bytes!!!"), 2*4096-16); err != nil {
		t.Errorf("16-byte write into page 2: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if after := mustPos(t, m, "w.db"); after != before {
		t.Errorf("position moved from %s to %s", before, after)
	}
	if err := m.store.Verify(context.Background(), "w.db"); err == nil {
		t.Error("verify passed although the file changed without a change set")
	}
	db.Close()
	m.close()

	m = mount(t, dataDir, nil)
	after := mustPos(t, m, "w.db")
	if after.TXID != before.TXID+1 {
		t.Errorf("after a restart the position is %s; want one change set past %s", after, before)
	}
	if err := m.store.Verify(context.Background(), "w.db"); err != nil {
		t.Errorf("verify after the restart: %v", err)
	}
	checkReplay(t, m, "w.db")
}

// TestCheckpointBehindReader checkpoints while a reader holds an old
// snapshot, so that the checkpoint copies only part of the WAL: its writes
// must still be recognised as checkpoint writes.
func TestCheckpointBehindReader(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	w := openDB(t, m.path("c.db"), "wal", "normal")
	mustExec(t, w, "PRAGMA wal_autocheckpoint=0")
	mustExec(t, w, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for range 20 {
		mustExec(t, w, "INSERT INTO t (v) VALUES (randomblob(300))")
	}
	r := openDB(t, m.path("c.db"), "wal", "normal")
	tx, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	mustExec(t, w, "UPDATE t SET v = randomblob(300)")
	var busy, logFrames, copied int
	if err := w.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied); err != nil {
		t.Fatalf("checkpoint behind a reader: %v", err)
	}
	if copied == 0 || copied == logFrames {
		t.Fatalf("checkpoint copied %d of %d frames; want some, not all", copied, logFrames)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, w, "PRAGMA wal_checkpoint(TRUNCATE)")
	if err := m.store.Verify(context.Background(), "c.db"); err != nil {
		t.Error(err)
	}
	checkReplay(t, m, "c.db")
}
