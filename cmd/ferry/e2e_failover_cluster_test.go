package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/faultproxy"
	"github.com/ferrydb/ferry/internal/s3test"
)

// failCluster is three `ferry mount` processes on 127.0.0.1-3 with one
// file bucket, whose lease traffic passes through fault proxies: with
// Raft leases, a proxy in front of each node's Raft port, which the node
// advertises; with S3 leases, each node's own proxy to the lease server.
// node1 is in region ams, the others in ord, and databases named home-*
// prefer ams. Replicas follow the bucket every 200ms.
type failCluster struct {
	*raftCluster
	leases  string // "raft" or "s3"
	ips     []string
	proxies []*faultproxy.Proxy
	down    []bool // killed and not restarted
}

// failOptions are what scenarios vary in a failCluster.
type failOptions struct {
	leases    string // "raft" or "s3"
	ttl       string // lease.ttl
	deadAfter string // lease.raft.dead-after, or "" for the default
}

var failRegions = []string{"ams", "ord", "ord"}

const failPlacement = `  preferred:
    - {pattern: "home-*", region: ams}
`

const failBucketLines = "  upload-interval: 100ms\n  follow-interval: 200ms\n  synchronous: [\"sync-*\"]\n"

func startFailCluster(t *testing.T, o failOptions) *failCluster {
	t.Helper()
	c := &failCluster{leases: o.leases, ips: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, down: make([]bool, 3)}
	switch o.leases {
	case "raft":
		var binds, fronts []string
		for _, ip := range c.ips {
			bind := freeAddr(t, ip)
			p := newFaultProxy(t, ip, bind)
			binds, fronts = append(binds, bind), append(fronts, p.Addr())
			c.proxies = append(c.proxies, p)
		}
		c.raftCluster = startRaftClusterAt(t, binds, fronts, o.ttl, func(i int) (string, string) {
			lines := fmt.Sprintf("    advertise: %q\n", fronts[i])
			if o.deadAfter != "" {
				lines += "    dead-after: " + o.deadAfter + "\n"
			}
			return lines + "  region: " + failRegions[i] + "\n" + failPlacement, failBucketLines
		})
	case "s3":
		srv := s3test.Start(t)
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		t.Setenv("AWS_REGION", srv.Region)
		u, err := url.Parse(srv.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		c.raftCluster = &raftCluster{t: t, bucket: filepath.Join(t.TempDir(), "bucket")}
		for i, ip := range c.ips {
			p := newFaultProxy(t, ip, u.Host)
			c.proxies = append(c.proxies, p)
			c.nodes = append(c.nodes, startMountWith(t, fmt.Sprintf(`lease:
  type: s3
  node: node%d
  region: %s
  ttl: %s
  acquire-timeout: 3s
%s  s3:
    bucket: %s
    endpoint: "http://%s"
    force-path-style: true
bucket:
  type: file
  path: %q
%s`, i+1, failRegions[i], o.ttl, failPlacement, srv.Bucket, p.Addr(), c.bucket, failBucketLines)))
		}
	default:
		t.Fatalf("lease type %q", o.leases)
	}
	return c
}

// newFaultProxy starts a fault proxy on ip that forwards to target and
// closes it when the test ends, after the mounts have stopped.
func newFaultProxy(t *testing.T, ip, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(ip+":0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// running reports whether node i is up.
func (c *failCluster) running(i int) bool { return !c.down[i] }

// isolate cuts node i off from the lease authority. With Raft, nothing
// reaches it and nothing it sends reaches the others, whose proxies tell
// its traffic apart by its source IP. With S3, its requests to the lease
// server vanish. It can still reach the file bucket, so only fencing keeps
// it from uploading under a lease it has lost.
func (c *failCluster) isolate(i int) {
	c.proxies[i].Partition()
	if c.leases == "raft" {
		for j, p := range c.proxies {
			if j != i {
				p.Block(c.ips[i])
			}
		}
	}
}

// heal ends every partition.
func (c *failCluster) heal() {
	for _, p := range c.proxies {
		p.Heal()
	}
}

// kill9 kills node i with SIGKILL and detaches its mount.
func (c *failCluster) kill9(i int) {
	c.t.Helper()
	if err := c.nodes[i].kill(); err != nil {
		c.t.Fatalf("node%d: %v", i+1, err)
	}
	c.down[i] = true
}

// restart starts node i again on its data directory and, with Raft,
// waits until it follows a leader.
func (c *failCluster) restart(i int) {
	c.t.Helper()
	c.nodes[i].restart(c.t)
	c.down[i] = false
	if c.leases == "raft" {
		c.waitFor(fmt.Sprintf("node%d never followed a leader after its restart", i+1), func() bool {
			rep, err := clusterStatus(c.nodes[i])
			return err == nil && rep.Leader != "" && len(rep.Members) == len(c.nodes)
		})
	}
}

// sql runs statements on database db through node i's mount with the
// sqlite3 CLI, bounded, and returns the trimmed output.
func (c *failCluster) sql(i int, db, stmts string) (string, error) {
	out, err := runBounded(c.nodes[i], 30*time.Second, "sqlite3", "-bail", "-cmd", ".timeout 2000", c.nodes[i].Path(db), stmts)
	return strings.TrimSpace(out), err
}

// mustSQL is sql that fails the test on error.
func (c *failCluster) mustSQL(i int, db, stmts string) string {
	c.t.Helper()
	out, err := c.sql(i, db, stmts)
	if err != nil {
		c.t.Fatalf("node%d: %s: %v\n%s\nnode output:\n%s", i+1, db, err, out, c.nodes[i].output)
	}
	return out
}

// insert is the statement that adds rows ids to table t, written by node
// i. Running it again after an uncertain failure does no harm.
func insert(i int, ids ...int64) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "INSERT OR REPLACE INTO t VALUES (%d, 'node%d');", id, i+1)
	}
	return b.String()
}

// createTable is the statement that creates table t.
const createTable = "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT);"

// writeUntil retries a write on node i until it succeeds, up to a minute,
// and returns how long it took from start.
func (c *failCluster) writeUntil(i int, db, stmts string, start time.Time) time.Duration {
	c.t.Helper()
	var took time.Duration
	c.waitForLong(fmt.Sprintf("node%d never wrote %s", i+1, db), time.Minute, func() bool {
		_, err := c.sql(i, db, stmts)
		took = time.Since(start)
		return err == nil
	})
	return took
}

// waitForLong is waitFor with its own bound.
func (c *failCluster) waitForLong(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			var outs string
			for i, n := range c.nodes {
				outs += fmt.Sprintf("node%d:\n%s\n", i+1, n.output)
			}
			c.t.Fatalf("%s within %v\n%s", what, d, outs)
		}
	}
}

// waitDurable waits until node i, the holder of db, sees the bucket at
// its local position: everything it acknowledged is uploaded.
func (c *failCluster) waitDurable(i int, db string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("node%d never uploaded %s", i+1, db), func() bool {
		rep, err := clusterStatus(c.nodes[i])
		return err == nil && lagIsZeroReport(rep, db)
	})
}

// waitHolder waits until node i's status shows node want holding db.
func (c *failCluster) waitHolder(i int, db, want string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("node%d never saw %s holding %s", i+1, want, db), func() bool {
		rep, err := clusterStatus(c.nodes[i])
		h, _ := holderOf(rep, db)
		return err == nil && h == want
	})
}

// leader returns the index of the Raft leader, as node i sees it.
func (c *failCluster) leader(i int) int {
	c.t.Helper()
	var id string
	c.waitFor("no leader", func() bool {
		rep, err := clusterStatus(c.nodes[i])
		id = rep.Leader
		return err == nil && id != ""
	})
	var n int
	if _, err := fmt.Sscanf(id, "node%d", &n); err != nil {
		c.t.Fatalf("leader %q: %v", id, err)
	}
	return n - 1
}

// durations summarizes measured times as min/median/max.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("min %v, median %v, max %v over %d", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
