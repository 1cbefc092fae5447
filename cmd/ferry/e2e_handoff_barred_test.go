package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runFerry runs the ferry binary with args and returns its combined output
// and exit error.
func runFerry(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ferryBin, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestE2EHandoffToBarredNode hands leases to nodes that placement bars: one
// outside the candidate regions, and one outside a database's preferred
// region while a candidate in it is up. Each handoff fails with an error
// that says why and a non-zero exit, and the lease stays with its holder,
// which can still write. A handoff placement allows still works.
func TestE2EHandoffToBarredNode(t *testing.T) {
	regions := []string{"ord", "ams", "syd"}
	c := startRaftClusterWith(t, 3, "2s", func(i int) (string, string) {
		return "  region: " + regions[i] + `
  candidate-regions: [ord, ams]
  preferred:
    - {pattern: "us/*", region: ord}
`, ""
	})
	n1 := c.nodes[0]
	if err := os.MkdirAll(n1.Path("us"), 0o755); err != nil {
		t.Fatal(err)
	}
	runSQLiteCLI(t, n1.Path("us/b.db"), "CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n")
	runSQLiteCLI(t, n1.Path("x.db"), "CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n")
	for _, name := range []string{"us/b.db", "x.db"} {
		c.waitFor(name+" never showed node1 as holder", func() bool {
			rep, err := clusterStatus(c.nodes[2])
			h, _ := holderOf(rep, name)
			return err == nil && h == "node1"
		})
	}

	c.waitFor("a member never showed as reachable", func() bool { return allHealthy(c.nodes[2]) })
	for _, tc := range []struct{ db, node, why string }{
		{"us/b.db", "node2", "prefers region"},
		{"x.db", "node3", "not a lease candidate"},
	} {
		// Ask from the node that is not involved: the request goes to the
		// holder.
		out, err := runFerry(t, "handoff", "-config", c.nodes[2].Config, tc.db, tc.node)
		if err == nil {
			t.Fatalf("handoff %s to %s succeeded: %s", tc.db, tc.node, out)
		}
		t.Logf("handoff %s to %s: %s", tc.db, tc.node, out)
		if !strings.Contains(out, tc.why) || strings.Contains(out, "handed") {
			t.Fatalf("handoff %s to %s: %q, want an error saying %q", tc.db, tc.node, out, tc.why)
		}
		rep, err := clusterStatus(n1)
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := holderOf(rep, tc.db); h != "node1" {
			t.Fatalf("after a refused handoff of %s, holder %q, want node1", tc.db, h)
		}
		runSQLiteCLI(t, n1.Path(tc.db), "INSERT INTO t VALUES (2);\n")
	}

	if out, err := runFerry(t, "handoff", "-config", n1.Config, "x.db", "node2"); err != nil {
		t.Fatalf("handoff x.db to node2: %v: %s", err, out)
	}
	rep, err := clusterStatus(n1)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := holderOf(rep, "x.db"); h != "node2" {
		t.Fatalf("right after a successful handoff, x.db is held by %q, want node2", h)
	}
}
