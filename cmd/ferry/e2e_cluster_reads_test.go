package main

import (
	"os"
	"path/filepath"
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
	rep, err := clusterStatus(n2)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := holderOf(rep, "w.db"); h != "node2" {
		t.Fatalf("after a write on node2, w.db is held by %q, want node2", h)
	}
}
