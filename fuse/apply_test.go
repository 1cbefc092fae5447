package fuse_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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

// TestApplyWaitsForReaders: a change set is not applied under a read
// transaction in progress in another process; in rollback-journal modes
// it waits until the transaction ends. In WAL mode it goes into the WAL
// without waiting, and the transaction keeps its snapshot.
func TestApplyWaitsForReaders(t *testing.T) {
	python := needTool(t, "python3")
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			primary := mount(t, t.TempDir(), nil)
			replica := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(&readOnlyGuard{}) })
			pdb := openDB(t, primary.path("x.db"), mode, "full")
			mustExec(t, pdb, "CREATE TABLE t (v INTEGER)")
			if err := primary.store.DB("x.db").Sync(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			apply := func(files []string) error {
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						return err
					}
					if _, err := replica.store.ApplyLTX(ctx, "x.db", bytes.NewReader(b)); err != nil {
						return err
					}
				}
				return nil
			}
			first := ltxFilesOf(t, primary, "x.db")
			if err := apply(first); err != nil {
				t.Fatal(err)
			}
			mustExec(t, pdb, "INSERT INTO t VALUES (1)")
			if err := primary.store.DB("x.db").Sync(); err != nil {
				t.Fatal(err)
			}
			rest := ltxFilesOf(t, primary, "x.db")[len(first):]

			// POSIX locks of one process never conflict with each other,
			// so the reader runs in its own process.
			script := `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
print(c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
sys.stdin.readline()
print(c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
c.execute("COMMIT")
`
			cmd := exec.CommandContext(ctx, python, "-c", script, replica.path("x.db"))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			r := bufio.NewReader(stdout)
			if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "0" {
				t.Fatalf("reader: %q, %v", line, err)
			}
			done := make(chan error, 1)
			go func() { done <- apply(rest) }()
			if mode == "wal" {
				if err := <-done; err != nil {
					t.Fatalf("apply through the WAL during a read transaction: %v", err)
				}
				done <- nil
			} else {
				select {
				case err := <-done:
					t.Fatalf("applied during a read transaction (err %v)", err)
				case <-time.After(300 * time.Millisecond):
				}
			}
			stdin.Write([]byte("\n"))
			if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "0" {
				t.Fatalf("read transaction saw %q, %v; want 0", line, err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			rdb := openDB(t, replica.path("x.db"), mode, "full")
			var n int
			if err := rdb.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
				t.Fatalf("after apply: %d rows, %v", n, err)
			}
		})
	}
}
