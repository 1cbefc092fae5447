package fuse_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestRenameJournalAway moves a transaction's rollback journal away before
// COMMIT, as SQLite's pager1-33 does: the rename works, the commit fails
// when it cannot delete the journal, and moving the journal back makes it
// hot, so the next reader rolls the transaction back. The log follows the
// file through all of it.
func TestRenameJournalAway(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	db := openDB(t, m.path("a.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t1(x)")
	mustExec(t, db, "INSERT INTO t1 VALUES('one')")
	mustExec(t, db, "INSERT INTO t1 VALUES('two')")

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	// An open transaction would keep db.Close, and the unmount, waiting.
	t.Cleanup(func() { tx.Rollback() })
	for _, v := range []string{"three", "four"} {
		if _, err := tx.Exec("INSERT INTO t1 VALUES(?)", v); err != nil {
			t.Fatal(err)
		}
	}
	journal, bak := m.path("a.db-journal"), m.path("bak-journal")
	if err := os.Rename(journal, bak); err != nil {
		t.Fatalf("rename journal away: %v", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("commit without its journal succeeded")
	}
	checkReplay(t, m, "a.db")

	if err := os.Rename(bak, journal); err != nil {
		t.Fatalf("rename journal back: %v", err)
	}
	db.Close()
	db = openDB(t, m.path("a.db"), "delete", "full")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d rows after the hot journal's rollback, want 2", n)
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal still there after rollback: %v", err)
	}
	checkReplay(t, m, "a.db")
	mustExec(t, db, "INSERT INTO t1 VALUES('five')")
	checkReplay(t, m, "a.db")
}

// TestRenamePlainAndDatabaseFiles renames plain files like any filesystem.
// A database renamed is deleted under its old name and becomes a database
// under its new one; a connection that has it open sees it moved, as
// SQLite expects, and can write again once it is back.
func TestRenamePlainAndDatabaseFiles(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	if err := os.WriteFile(m.path("a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("a.txt"), m.path("b.txt")); err != nil {
		t.Fatalf("rename plain file: %v", err)
	}
	if b, err := os.ReadFile(m.path("b.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("renamed file: %q, %v", b, err)
	}

	db := openDB(t, m.path("a.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t(x)")
	mustExec(t, db, "INSERT INTO t VALUES (1)")
	before := mustPos(t, m, "a.db")
	if err := os.Rename(m.path("a.db"), m.path("c.db")); err != nil {
		t.Fatalf("rename database: %v", err)
	}
	if _, err := m.store.Pos("a.db"); err == nil {
		t.Fatal("a.db is still a database after it was renamed")
	}
	checkReplay(t, m, "c.db")
	if _, err := db.Exec("INSERT INTO t VALUES (2)"); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Fatalf("write through a connection to a moved database: %v, want read-only", err)
	}

	if err := os.Rename(m.path("c.db"), m.path("a.db")); err != nil {
		t.Fatalf("rename database back: %v", err)
	}
	mustExec(t, db, "INSERT INTO t VALUES (3)")
	if after := mustPos(t, m, "a.db"); after.TXID <= before.TXID {
		t.Fatalf("a.db at %s after moving back, was at %s: its history did not go on", after, before)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows: %d, %v", n, err)
	}
	checkReplay(t, m, "a.db")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// A database with a WAL keeps its name: the WAL's frames would stay
	// behind under the old one.
	wal := openDB(t, m.path("w.db"), "wal", "normal")
	mustExec(t, wal, "CREATE TABLE t(x)")
	if err := os.Rename(m.path("w.db"), m.path("w2.db")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename database with a WAL: %v, want EXDEV", err)
	}
	if err := wal.Close(); err != nil {
		t.Fatal(err)
	}

	// A directory with databases in it keeps its name; an empty one moves.
	if err := os.Mkdir(m.path("tenant"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("a.db"), m.path("tenant/a.db")); err != nil {
		t.Fatalf("move database into a directory: %v", err)
	}
	checkReplay(t, m, "tenant/a.db")
	if err := os.Rename(m.path("tenant"), m.path("tenant2")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename directory with a database: %v, want EXDEV", err)
	}
	if err := os.Mkdir(m.path("empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("empty"), m.path("empty2")); err != nil {
		t.Fatalf("rename empty directory: %v", err)
	}

	// A plain file moved over a database replaces it.
	if err := os.Rename(m.path("b.txt"), m.path("tenant/a.db")); err != nil {
		t.Fatalf("rename over database: %v", err)
	}
	if _, err := m.store.Pos("tenant/a.db"); err == nil {
		t.Fatal("tenant/a.db is still a database after a plain file replaced it")
	}
}
