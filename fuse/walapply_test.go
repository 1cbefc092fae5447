package fuse_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// TestApplyThroughWALUnderIdleConnection applies change sets to a
// WAL-mode replica while another process keeps a connection open and idle
// between its queries, which holds a shared lock on the database file for
// as long as it is open. Each apply goes into the WAL instead of waiting
// for that connection: its next query sees the new rows, including after
// the WAL index's first hash page fills up (4062 frames), and once the
// connection closes the next apply folds the WAL into the database file.
func TestApplyThroughWALUnderIdleConnection(t *testing.T) {
	python := needTool(t, "python3")
	primary := mount(t, t.TempDir(), nil)
	replica := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(&readOnlyGuard{}) })
	// Small pages, so that a few thousand rows make a few thousand frames.
	pdb := openDB(t, primary.path("x.db"), "delete", "full")
	mustExec(t, pdb, "PRAGMA page_size=512")
	mustExec(t, pdb, "CREATE TABLE t (v INTEGER, pad BLOB)")
	mustExec(t, pdb, "PRAGMA journal_mode=WAL")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
			if _, err := replica.store.ApplyLTX(ctx, "x.db", bytes.NewReader(b)); err != nil {
				t.Fatalf("apply %s: %v", f, err)
			}
		}
		shipped = len(files)
	}
	ship()

	// POSIX locks of one process never conflict with each other, so the
	// connection runs in its own process.
	script := `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
for line in sys.stdin:
    print("%s %s" % c.execute("SELECT count(*), coalesce(sum(v), 0) FROM t").fetchone(), flush=True)
`
	cmd := exec.CommandContext(ctx, python, "-c", script, replica.path("x.db"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	query := func() string {
		t.Helper()
		if _, err := stdin.Write([]byte("\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("idle connection: %v", err)
		}
		return strings.TrimSpace(line)
	}
	if got := query(); got != "0 0" {
		t.Fatalf("idle connection sees %q, want 0 0", got)
	}

	rows, sum := 0, 0
	insert := func(n int) {
		t.Helper()
		tx, err := pdb.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			rows++
			sum += rows
			if _, err := tx.Exec("INSERT INTO t VALUES (?, randomblob(400))", rows); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// Small transactions, then large ones whose frames run past the first
	// page of the WAL index.
	for _, n := range []int{1, 5, 1500, 1500, 1500, 3} {
		insert(n)
		ship()
		if got, want := query(), fmt.Sprintf("%d %d", rows, sum); got != want {
			t.Fatalf("idle connection sees %q after %d rows, want %q", got, rows, want)
		}
	}
	if fi, err := os.Stat(replica.layout.DBPath("x.db") + "-wal"); err != nil || fi.Size() < 4062*(512+24) {
		t.Fatalf("replica's WAL: %v, %v; want the applied frames in it", fi, err)
	}
	check := func() {
		t.Helper()
		out, err := exec.CommandContext(ctx, python, "-c", `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("PRAGMA integrity_check").fetchone()[0], *c.execute("SELECT count(*), sum(v) FROM t").fetchone())
`, replica.path("x.db")).CombinedOutput()
		if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("ok %d %d", rows, sum); err != nil || got != want {
			t.Fatalf("fresh connection on the replica: %q (%v), want %q", got, err, want)
		}
	}
	check()

	// With the connection gone, an apply has the database to itself again
	// and folds the WAL into the database file.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	insert(2)
	ship()
	if fi, err := os.Stat(replica.layout.DBPath("x.db") + "-wal"); err == nil && fi.Size() != 0 {
		t.Fatalf("replica's WAL holds %d bytes after an apply with no connection open, want it folded", fi.Size())
	}
	check()
	if err := replica.store.DB("x.db").Sync(); err != nil {
		t.Fatal(err)
	}
}
