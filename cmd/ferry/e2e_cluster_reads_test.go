package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// primaryFile is the mount's read-only file naming database name's lease
// holder on m; it is absent while nobody holds the lease.
func primaryFile(m *testMount, name string) string {
	return filepath.Join(m.Dir, ".ferry", "primary", filepath.FromSlash(name))
}

// expectNoHolder fails the test if m knows of a holder of name's lease.
func expectNoHolder(t *testing.T, m *testMount, name, after string) {
	t.Helper()
	if b, err := os.ReadFile(primaryFile(m, name)); err == nil {
		t.Fatalf("after %s, %s's lease is held by %q; a read must not take it", after, name, b)
	}
	rep, err := clusterStatus(m)
	if err != nil {
		t.Fatal(err)
	}
	if h, e := holderOf(rep, name); h != "" {
		t.Fatalf("after %s, status shows %s held by %s (epoch %d); a read must not take it", after, name, h, e)
	}
}

// TestE2EReadTakesNoLease reads databases that nobody holds on a node of a
// Raft cluster: neither a WAL-mode nor a rollback-mode read takes the write
// lease. A connection that read first can still write afterwards, which
// takes the lease.
func TestE2EReadTakesNoLease(t *testing.T) {
	c := startRaftCluster(t, 3, "2s")
	n1, n2 := c.nodes[0], c.nodes[1]

	runSQLiteCLI(t, n1.Path("w.db"), "PRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n")
	runSQLiteCLI(t, n1.Path("d.db"), "CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n")
	// A clean stop uploads what the bucket lacks and releases every lease.
	n1.stop(t)
	for _, name := range []string{"w.db", "d.db"} {
		c.waitFor(name+" still held after node1 stopped", func() bool {
			rep, err := clusterStatus(n2)
			h, _ := holderOf(rep, name)
			return err == nil && h == ""
		})
	}

	if got := runSQLiteCLI(t, n2.Path("d.db"), "SELECT count(*) FROM t;\n"); got != "1" {
		t.Fatalf("rollback-mode read on node2: %q, want 1", got)
	}
	expectNoHolder(t, n2, "d.db", "a rollback-mode SELECT")
	if got := runSQLiteCLI(t, n2.Path("w.db"), "SELECT count(*) FROM t;\n"); got != "1" {
		t.Fatalf("WAL-mode read on node2: %q, want 1", got)
	}
	expectNoHolder(t, n2, "w.db", "a WAL-mode SELECT")

	// One connection reads, then writes: the read opened the WAL without
	// the lease, and the write takes it.
	app := startSQLShell(t, n2.Path("w.db"))
	if got := app.exec(t, "SELECT * FROM t"); got != "ok" {
		t.Fatalf("read on node2: %s", got)
	}
	expectNoHolder(t, n2, "w.db", "a read on an open WAL connection")
	if got := app.exec(t, "INSERT INTO t VALUES (2)"); got != "ok" {
		t.Fatalf("write on node2 after reading: %s\nnode2:\n%s", got, n2.output)
	}
	// node2's replica of the lease table shows the grant once the leader's
	// commit reaches it.
	c.waitFor("after a write on node2, status never showed node2 holding w.db", func() bool {
		rep, err := clusterStatus(n2)
		h, _ := holderOf(rep, "w.db")
		return err == nil && h == "node2"
	})
}

// TestE2EReplicaReadBeforeFirstUpload opens, on node2, databases that
// node1 holds but has not uploaded yet: the open fails and leaves no local
// stand-in that would hide the database later. Once node1 has uploaded
// them, both open on node2 with their data, one of them in a directory
// node2 did not have, and each restored file has its original's mode.
func TestE2EReplicaReadBeforeFirstUpload(t *testing.T) {
	c := startRaftClusterWith(t, 3, "2s", func(i int) (string, string) {
		if i == 0 {
			return "", "  upload-interval: 1h\n"
		}
		return "", ""
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	if err := os.MkdirAll(n1.Path("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"b.db", "sub/c.db"}
	for _, name := range names {
		runSQLiteCLI(t, n1.Path(name), "CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n")
	}
	if err := os.Chmod(n1.Path("b.db"), 0o640); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, name := range names {
		fi, err := os.Stat(n1.TreePath(name))
		if err != nil {
			t.Fatal(err)
		}
		modes[name] = fi.Mode().Perm()
		c.waitFor(name+" never showed node1 as holder on node2", func() bool {
			rep, err := clusterStatus(n2)
			h, _ := holderOf(rep, name)
			return err == nil && h == "node1"
		})
		if m, _ := filepath.Glob(filepath.Join(c.bucket, filepath.FromSlash(name), "*", "*.ltx")); len(m) > 0 {
			t.Fatalf("%s was uploaded already (%v); the test needs it not to be", name, m)
		}
	}
	if modes["b.db"] != 0o640 {
		t.Fatalf("b.db has mode %o on node1 after chmod 640", modes["b.db"])
	}

	for _, name := range names {
		out, err := exec.Command("sqlite3", "-bail", n2.Path(name), "SELECT count(*) FROM t;").CombinedOutput()
		if err == nil {
			t.Fatalf("read of %s on node2 before its first upload succeeded: %s", name, out)
		}
		t.Logf("read of %s on node2 before its first upload: %v: %s", name, err, strings.TrimSpace(string(out)))
		if _, err := os.Lstat(n2.TreePath(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("after a read of %s on node2, its backing file: %v; want none", name, err)
		}
	}

	// A clean stop uploads what the bucket lacks.
	n1.stop(t)
	for _, name := range names {
		if got := runSQLiteCLI(t, n2.Path(name), "SELECT count(*) FROM t;\n"); got != "1" {
			t.Fatalf("%s on node2 after its upload: %q, want 1", name, got)
		}
		fi, err := os.Stat(n2.TreePath(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != modes[name] {
			t.Fatalf("%s restored on node2 with mode %o, want the original's %o", name, got, modes[name])
		}
	}
}
