package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startStreamCluster starts n Raft nodes on 127.0.0.21 and up, each
// serving the peer stream on its own http.addr. Replicas do not poll the
// bucket (follow-interval -1s), so whatever reaches them after their
// first restore came by stream.
func startStreamCluster(t *testing.T, n int, ttl string) *raftCluster {
	t.Helper()
	var addrs, httpAddrs []string
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 21+i)
		addrs = append(addrs, freeAddr(t, ip))
		httpAddrs = append(httpAddrs, freeAddr(t, ip))
	}
	return startRaftClusterAt(t, addrs, addrs, ttl, func(i int) (string, string) {
		return fmt.Sprintf("http:\n  addr: %q\n", httpAddrs[i]), ""
	})
}

// sqliteOn runs sql with the sqlite3 shell on database name of node m.
func sqliteOn(m *testMount, name, sql string) (string, error) {
	out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", m.Path(name), sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestE2EStreamToReplicas commits on the holder of a three-node cluster
// and sees each commit on both replicas, which do not poll the bucket; a
// replica killed with -9 and restarted while the holder keeps writing
// catches up from its own position.
func TestE2EStreamToReplicas(t *testing.T) {
	c := startStreamCluster(t, 3, "2s")
	holder, r1, r2 := c.nodes[0], c.nodes[1], c.nodes[2]
	if out, err := sqliteOn(holder, "s.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("create on holder: %v %s", err, out)
	}
	// Read-only, so that a replica that has not heard of the database
	// yet does not create it.
	count := func(m *testMount) string {
		out, _ := exec.Command("sqlite3", "-readonly", "-cmd", ".timeout 5000", m.Path("s.db"), "SELECT count(*) FROM t").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	// The replicas restore the database from the bucket when they first
	// open it; from then on it is streamed.
	for _, r := range []*testMount{r1, r2} {
		c.waitFor("replica never restored s.db", func() bool { return count(r) == "1" })
	}
	for i := 2; i <= 20; i++ {
		if out, err := sqliteOn(holder, "s.db", fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); err != nil {
			t.Fatalf("insert %d: %v %s", i, err, out)
		}
	}
	for _, r := range []*testMount{r1, r2} {
		c.waitFor("a replica never saw the holder's commits", func() bool { return count(r) == "20" })
	}

	// kill -9 a replica mid-stream; the holder keeps writing.
	if err := r2.kill(); err != nil {
		t.Fatal(err)
	}
	for i := 21; i <= 40; i++ {
		if out, err := sqliteOn(holder, "s.db", fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); err != nil {
			t.Fatalf("insert %d: %v %s", i, err, out)
		}
	}
	r2.restart(t)
	c.waitFor("restarted replica never caught up", func() bool { return count(r2) == "40" })
	c.waitFor("the other replica stopped following", func() bool { return count(r1) == "40" })
	for _, r := range []*testMount{r1, r2} {
		if !strings.Contains(r.output.String(), "peer stream connected") {
			t.Fatalf("replica never connected to the holder's stream:\n%s", r.output)
		}
	}
	if strings.Contains(r2.output.String(), "set the local copy aside") {
		t.Fatalf("restarted replica took a snapshot instead of continuing its position:\n%s", r2.output)
	}
}

// TestE2EStreamBench runs `ferry bench-stream` on a three-node cluster.
// By default it times a few commits, to check that the command works; with
// FERRY_STREAM_BENCH=1 it runs the full benchmark and logs the report.
func TestE2EStreamBench(t *testing.T) {
	args := []string{"bench-stream", "-commits", "20", "-rows", "1000", "-duration", "200ms"}
	if os.Getenv("FERRY_STREAM_BENCH") != "" {
		args = []string{"bench-stream"}
	}
	c := startStreamCluster(t, 3, "10s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append(args, c.nodes[0].Dir, c.nodes[1].Dir, c.nodes[2].Dir)
	out, err := exec.CommandContext(ctx, ferryBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry bench-stream: %v\n%s\nholder:\n%s\nreplica:\n%s", err, out, c.nodes[0].output, c.nodes[1].output)
	}
	t.Logf("ferry bench-stream:\n%s", out)
	for _, want := range []string{"lag WAL", "lag DELETE", "catch-up", "holder commits/s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
