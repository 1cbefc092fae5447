package fuse_test

import (
	"errors"
	"os"
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

// TestRenamePlainAndDatabaseFiles renames plain files like any filesystem
// and refuses, with EXDEV, to rename a database file or over one.
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
	if err := os.Rename(m.path("a.db"), m.path("c.db")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename database: %v, want EXDEV", err)
	}
	if err := os.Rename(m.path("b.txt"), m.path("a.db")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename over database: %v, want EXDEV", err)
	}
	checkReplay(t, m, "a.db")
}
