package fuse_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/ferrydb/ferry"
)

// TestApplyInvalidatesReaders ships a primary's change sets to a replica
// mount whose readers keep their connections open: each reader sees the
// new rows at its next transaction, through the kernel page cache and
// SQLite's own caches.
func TestApplyInvalidatesReaders(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			primary := mount(t, t.TempDir(), nil)
			replica := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(&readOnlyGuard{}) })
			pdb := openDB(t, primary.path("x.db"), mode, "full")
			mustExec(t, pdb, "CREATE TABLE t (v INTEGER)")
			mustExec(t, pdb, "INSERT INTO t VALUES (1)")

			shipped := 0
			ship := func() {
				t.Helper()
				if err := primary.store.DB("x.db").Sync(); err != nil {
					t.Fatal(err)
				}
				files := ltxFilesOf(t, primary, "x.db")
				for _, f := range files[shipped:] {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := replica.store.ApplyLTX(context.Background(), "x.db", bytes.NewReader(b)); err != nil {
						t.Fatalf("apply %s: %v", f, err)
					}
				}
				shipped = len(files)
			}
			ship()

			rdb := openDB(t, replica.path("x.db"), mode, "full")
			count := func() int {
				var n int
				if err := rdb.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := count(); n != 1 {
				t.Fatalf("replica sees %d rows, want 1", n)
			}
			for i := 2; i <= 20; i++ {
				mustExec(t, pdb, "INSERT INTO t VALUES (?)", i)
				ship()
				if n := count(); n != i {
					t.Fatalf("replica sees %d rows after %d commits", n, i)
				}
			}
			var ok string
			if err := rdb.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
				t.Fatalf("integrity_check on replica: %q, %v", ok, err)
			}
		})
	}
}

type readOnlyGuard struct{}

func (readOnlyGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	return 0, ferry.ErrReadOnly
}

func ltxFilesOf(t *testing.T, m *testMount, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(m.layout.LTXDir(name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, _, err := ferry.ParseLTXFilename(e.Name()); err == nil {
			out = append(out, m.layout.LTXDir(name)+"/"+e.Name())
		}
	}
	return out
}
