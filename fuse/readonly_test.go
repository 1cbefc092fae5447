package fuse_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrydb/ferry"
)

// switchGuard is a write guard that is flipped by the test.
type switchGuard struct{ readOnly atomic.Bool }

func (g *switchGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	if g.readOnly.Load() {
		return 0, fmt.Errorf("%w: test lease elsewhere", ferry.ErrReadOnly)
	}
	return 1, nil
}

func TestReadOnlyDatabase(t *testing.T) {
	for _, mode := range []string{"delete", "truncate", "persist", "wal"} {
		t.Run(mode, func(t *testing.T) {
			guard := &switchGuard{}
			m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(guard) })
			path := m.path("ro.db")
			db := openDB(t, path, mode, "full")
			mustExec(t, db, "CREATE TABLE t (v TEXT)")
			mustExec(t, db, "INSERT INTO t VALUES ('before')")
			before := mustPos(t, m, "ro.db")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			content, err := os.ReadFile(m.layout.DBPath("ro.db"))
			if err != nil {
				t.Fatal(err)
			}

			guard.readOnly.Store(true)
			db = openDB(t, path, mode, "full")
			var reader *sql.DB
			if mode == "wal" {
				// A second connection keeps the WAL in place, as on a
				// replica with readers.
				reader = openDB(t, path, mode, "full")
				var n int
				if err := reader.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
					t.Fatalf("read: n=%d err=%v", n, err)
				}
			}
			_, err = db.Exec("INSERT INTO t VALUES ('during')")
			if err == nil {
				t.Fatal("write to a read-only database succeeded")
			}
			// Rollback-journal modes report SQLITE_READONLY. In WAL mode,
			// a connection that found no WAL reports the refused write
			// as an I/O error on a read-only file system.
			if !strings.Contains(err.Error(), "readonly database") && (mode != "wal" || !strings.Contains(err.Error(), "read-only file system")) {
				t.Errorf("error %q does not say the database is read-only", err)
			}
			var n int
			if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
				t.Fatalf("read from read-only database: n=%d err=%v", n, err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if got := mustPos(t, m, "ro.db"); got != before {
				t.Fatalf("position moved from %s to %s", before, got)
			}
			after, err := os.ReadFile(m.layout.DBPath("ro.db"))
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(content) {
				t.Fatal("read-only database file changed")
			}

			if reader != nil {
				reader.Close()
			}
			guard.readOnly.Store(false)
			db = openDB(t, path, mode, "full")
			mustExec(t, db, "INSERT INTO t VALUES ('after')")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			checkReplay(t, m, "ro.db")
		})
	}
}

// TestReadOnlyOpenConnection keeps a connection open across the switch:
// its write fails cleanly and nothing changes.
func TestReadOnlyOpenConnection(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			guard := &switchGuard{}
			m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(guard) })
			db := openDB(t, m.path("ro.db"), mode, "full")
			mustExec(t, db, "CREATE TABLE t (v TEXT)")
			mustExec(t, db, "INSERT INTO t VALUES ('before')")
			before := mustPos(t, m, "ro.db")
			guard.readOnly.Store(true)
			_, err := db.Exec("INSERT INTO t VALUES ('during')")
			if err == nil {
				t.Fatal("write to a read-only database succeeded")
			}
			t.Logf("error on an open connection: %v", err)
			guard.readOnly.Store(false)
			if got := mustPos(t, m, "ro.db"); got != before {
				t.Fatalf("position moved from %s to %s", before, got)
			}
			mustExec(t, db, "INSERT INTO t VALUES ('after')")
			var n int
			if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
				t.Fatalf("count = %d, %v", n, err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			checkReplay(t, m, "ro.db")
		})
	}
}

// TestRemoveEmptyFileWhileReadOnly removes an empty file, a database
// candidate with no history, on a node that may not write: nothing is lost,
// so it goes. A database there still cannot be removed.
func TestRemoveEmptyFileWhileReadOnly(t *testing.T) {
	guard := &switchGuard{}
	m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(guard) })
	db := openDB(t, m.path("full.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (v)")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("empty.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	guard.readOnly.Store(true)
	if err := os.Remove(m.path("empty.db")); err != nil {
		t.Fatalf("remove an empty file on a read-only node: %v", err)
	}
	if err := os.Remove(m.path("full.db")); err == nil {
		t.Fatal("removed a database on a read-only node")
	}
}
