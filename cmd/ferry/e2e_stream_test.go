package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/faultproxy"
	"github.com/ferrydb/ferry/internal/peerauth"
)

// startStreamCluster starts n Raft nodes on 127.0.0.21 and up, each
// serving the peer stream on its own http.addr. Replicas do not poll the
// bucket (follow-interval -1s), so whatever reaches them after their
// first restore came by stream.
func startStreamCluster(t *testing.T, n int, ttl string) *raftCluster {
	t.Helper()
	c, _ := startStreamClusterProxied(t, n, ttl)
	return c
}

// startStreamClusterProxied is startStreamCluster with each node's HTTP
// server advertised through a fault proxy, so that a test can delay or cut
// the stream from it.
func startStreamClusterProxied(t *testing.T, n int, ttl string) (*raftCluster, []*faultproxy.Proxy) {
	t.Helper()
	var addrs, httpAddrs []string
	var proxies []*faultproxy.Proxy
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 21+i)
		addrs = append(addrs, freeAddr(t, ip))
		httpAddrs = append(httpAddrs, freeAddr(t, ip))
		p, err := faultproxy.New(ip+":0", httpAddrs[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies = append(proxies, p)
	}
	c := startRaftClusterAt(t, addrs, addrs, ttl, func(i int) (string, string) {
		return fmt.Sprintf("http:\n  addr: %q\n  advertise-url: \"http://%s\"\n", httpAddrs[i], proxies[i].Addr()), ""
	})
	return c, proxies
}

// countRows counts t's rows in database name on m, read-only, so that a
// replica that has not heard of the database yet does not create it.
func countRows(m *testMount, name string) string {
	out, _ := exec.Command("sqlite3", "-readonly", "-cmd", ".timeout 5000", m.Path(name), "SELECT count(*) FROM t").CombinedOutput()
	return strings.TrimSpace(string(out))
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
	count := func(m *testMount) string { return countRows(m, "s.db") }
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

// TestE2EStreamFailoverAndDelay streams through a proxy that adds 80 ms of
// round trip: a burst of commits reaches the replicas on the one
// connection without waiting a round trip each (the time is logged). Then
// the holder is killed with -9; the next holder catches up, writes, and
// streams to the remaining replica, which does not poll the bucket.
func TestE2EStreamFailoverAndDelay(t *testing.T) {
	c, proxies := startStreamClusterProxied(t, 3, "1s")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	if out, err := sqliteOn(n1, "f.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (0);"); err != nil {
		t.Fatalf("create on node1: %v %s", err, out)
	}
	for _, r := range []*testMount{n2, n3} {
		c.waitFor("replica never restored f.db", func() bool { return countRows(r, "f.db") == "1" })
	}
	for _, p := range proxies {
		p.SetDelay(40 * time.Millisecond) // each way
	}
	app := startSQLShell(t, n1.Path("f.db"))
	const burst = 200
	start := time.Now()
	for i := 1; i <= burst; i++ {
		if got := app.exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", i)); got != "ok" {
			t.Fatalf("insert %d: %s", i, got)
		}
	}
	want := fmt.Sprint(burst + 1)
	for _, r := range []*testMount{n2, n3} {
		c.waitFor("a replica never saw the burst through the delayed stream", func() bool { return countRows(r, "f.db") == want })
	}
	t.Logf("%d commits reached both replicas through 80 ms of round trip in %v (one round trip each would take %v)",
		burst, time.Since(start), burst*80*time.Millisecond)
	for _, p := range proxies {
		p.SetDelay(0)
	}

	// The bucket must hold everything before the kill: what it lacks is
	// the stated loss window of a failover, not this test's subject.
	c.waitFor("node1's writes never all reached the bucket", func() bool {
		rep, err := clusterStatus(n1)
		return err == nil && lagIsZeroReport(rep, "f.db")
	})
	if err := n1.kill(); err != nil {
		t.Fatal(err)
	}
	c.waitFor("node2 never took over the write lease", func() bool {
		_, err := sqliteOn(n2, "f.db", "INSERT INTO t VALUES (1000)")
		return err == nil
	})
	want = fmt.Sprint(burst + 2)
	c.waitFor("node3 never saw the new holder's commit", func() bool { return countRows(n3, "f.db") == want })
	if !streamedFrom(n3, proxies[1].Addr()) {
		t.Fatalf("node3 never streamed from the new holder:\n%s", n3.output)
	}
}

// streamedFrom reports whether m's log shows a stream connected to the
// holder at addr.
func streamedFrom(m *testMount, addr string) bool {
	for _, line := range strings.Split(m.output.String(), "\n") {
		if strings.Contains(line, "peer stream connected") && strings.Contains(line, "holder=http://"+addr) {
			return true
		}
	}
	return false
}

// TestE2EStreamPartitionedHolder cuts the holder off from the lease
// cluster (Raft through fault proxies) while its stream stays reachable.
// Its lease runs out, another node takes the database over and writes;
// nothing the old holder does after that reaches any copy: the remaining
// replica ends with exactly the new holder's rows.
func TestE2EStreamPartitionedHolder(t *testing.T) {
	ips := []string{"127.0.0.24", "127.0.0.25", "127.0.0.26"}
	var binds, fronts, httpAddrs []string
	var raftProxies []*faultproxy.Proxy
	for _, ip := range ips {
		bind := freeAddr(t, ip)
		p := newFaultProxy(t, ip, bind)
		binds, fronts = append(binds, bind), append(fronts, p.Addr())
		raftProxies = append(raftProxies, p)
		httpAddrs = append(httpAddrs, freeAddr(t, ip))
	}
	c := startRaftClusterAt(t, binds, fronts, "2s", func(i int) (string, string) {
		return fmt.Sprintf("    advertise: %q\nhttp:\n  addr: %q\n", fronts[i], httpAddrs[i]),
			"  upload-interval: 100ms\n"
	})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	if out, err := sqliteOn(n1, "p.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("create on node1: %v %s", err, out)
	}
	for _, r := range []*testMount{n2, n3} {
		c.waitFor("replica never restored p.db", func() bool { return countRows(r, "p.db") == "1" })
	}
	c.waitFor("node1's writes never all reached the bucket", func() bool {
		rep, err := clusterStatus(n1)
		return err == nil && lagIsZeroReport(rep, "p.db")
	})

	// Isolate node1's lease traffic; its HTTP server stays reachable.
	raftProxies[0].Partition()
	for _, p := range raftProxies[1:] {
		p.Block(ips[0])
	}
	// node2 takes over once node1's lease has expired.
	c.waitFor("node2 never took over the write lease", func() bool {
		_, err := sqliteOn(n2, "p.db", "INSERT INTO t VALUES (2)")
		return err == nil
	})
	// node1 no longer holds the lease: its write fails (after trying to
	// acquire it for acquire-timeout), and nothing of it may reach anyone.
	if out, err := sqliteOn(n1, "p.db", "INSERT INTO t VALUES (99)"); err == nil {
		t.Fatalf("isolated node1 accepted a write after node2 took the lease over: %s", out)
	}
	if out, err := sqliteOn(n2, "p.db", "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("write on node2: %v %s", err, out)
	}
	c.waitFor("node3 never got node2's writes", func() bool { return countRows(n3, "p.db") == "3" })
	got, _ := exec.Command("sqlite3", "-readonly", n3.Path("p.db"), "SELECT group_concat(x) FROM t").CombinedOutput()
	if strings.TrimSpace(string(got)) != "1,2,3" {
		t.Fatalf("node3 has rows %q, want 1,2,3", got)
	}
	for _, p := range raftProxies {
		p.Heal()
	}
}

// TestE2EStreamFetchNotInBucket opens, on a replica, a database whose
// holder has not uploaded it (its upload interval is an hour): the
// replica fetches it from the holder, then follows it by stream.
func TestE2EStreamFetchNotInBucket(t *testing.T) {
	var addrs, httpAddrs []string
	for i := range 2 {
		ip := fmt.Sprintf("127.0.0.%d", 27+i)
		addrs = append(addrs, freeAddr(t, ip))
		httpAddrs = append(httpAddrs, freeAddr(t, ip))
	}
	c := startRaftClusterAt(t, addrs, addrs, "2s", func(i int) (string, string) {
		return fmt.Sprintf("http:\n  addr: %q\n", httpAddrs[i]), "  upload-interval: 1h\n"
	})
	holder, replica := c.nodes[0], c.nodes[1]
	if out, err := sqliteOn(holder, "n.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("create on holder: %v %s", err, out)
	}
	c.waitFor("replica never fetched n.db from its holder", func() bool { return countRows(replica, "n.db") == "1" })
	if out, err := sqliteOn(holder, "n.db", "INSERT INTO t VALUES (2);"); err != nil {
		t.Fatalf("insert on holder: %v %s", err, out)
	}
	c.waitFor("replica never streamed n.db", func() bool { return countRows(replica, "n.db") == "2" })
	if !strings.Contains(replica.output.String(), "fetched database from its holder") {
		t.Fatalf("replica did not fetch from the holder:\n%s", replica.output)
	}
}

// TestE2EStreamRequiresClusterSecret: the peer stream and the snapshot
// fetch answer only members of the cluster. A request without the
// cluster's credentials, or with another secret, gets 401 and no data.
func TestE2EStreamRequiresClusterSecret(t *testing.T) {
	c, proxies := startStreamClusterProxied(t, 2, "2s")
	if out, err := sqliteOn(c.nodes[0], "sec.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("create on holder: %v %s", err, out)
	}
	for _, hdr := range []map[string]string{
		{},
		{peerauth.HeaderClusterID: "ferry-e2e", "Authorization": "Bearer not-the-secret"},
	} {
		for _, path := range []string{"/v1/stream", "/v1/snapshot?db=sec.db"} {
			method := http.MethodPost
			if strings.HasPrefix(path, "/v1/snapshot") {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, "http://"+proxies[0].Addr()+path, strings.NewReader(`{"db":"sec.db"}`+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			// Served, the stream would never end: a bound keeps the test
			// from hanging on it.
			client := &http.Client{Timeout: 5 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s with %v: %v, want 401", method, path, hdr, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "SQLite") {
				t.Fatalf("%s %s with %v: %d %.200q, want 401 and no data", method, path, hdr, resp.StatusCode, body)
			}
		}
	}
}
