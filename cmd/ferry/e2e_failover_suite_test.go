package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// failoverCase is one fault scenario. It runs on a fresh database per
// iteration it, checks the history when the fault is over, and returns
// how long after the fault another node's first write succeeded (zero
// when it does not measure that).
type failoverCase func(t *testing.T, c *failCluster, it int) time.Duration

// TestE2EFailoverSuite runs each fault scenario several times on a
// three-node cluster of real `ferry mount` processes whose lease traffic
// passes through fault proxies, and after each one checks the bucket's
// history and every node's copy (checkHistory). Each scenario runs
// FERRY_FAILOVER_ITERATIONS times (default 5) on one cluster. It logs how
// long a write elsewhere took to succeed after the fault; with the
// default 10s TTL that is measured once.
func TestE2EFailoverSuite(t *testing.T) {
	n := 5
	if s := os.Getenv("FERRY_FAILOVER_ITERATIONS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("FERRY_FAILOVER_ITERATIONS=%q: want a positive number", s)
		}
		n = v
	}
	raft1s := failOptions{leases: "raft", ttl: "1s"}
	s31s := failOptions{leases: "s3", ttl: "1s"}
	cases := []struct {
		name       string
		opts       failOptions
		iterations int
		run        failoverCase
	}{
		{"raft/kill-holder", raft1s, n, failKillHolder},
		{"raft/kill-holder-synchronous", raft1s, n, failKillSynchronousHolder},
		{"raft/kill-restart-move-back", raft1s, n, failMoveBack},
		{"raft/isolate-holder", raft1s, n, failIsolateHolder},
		{"raft/idle-wal-replica", raft1s, n, failIdleWALReplica},
		{"raft/rejoin-after-dead-after", failOptions{leases: "raft", ttl: "1s", deadAfter: "2s"}, n, failRejoin},
		{"raft/handoff-to-barred-node", raft1s, n, failBarredHandoff},
		{"s3/kill-holder", s31s, n, failKillHolder},
		{"s3/isolate-holder", s31s, n, failIsolateHolder},
		{"raft-ttl10s/kill-holder", failOptions{leases: "raft", ttl: "10s"}, 1, failKillHolder},
	}
	var summary []string
	for _, fc := range cases {
		ok := t.Run(fc.name, func(t *testing.T) {
			c := startFailCluster(t, fc.opts)
			var times []time.Duration
			for it := range fc.iterations {
				took := fc.run(t, c, it)
				if took > 0 {
					t.Logf("iteration %d: first write on another node %v after the fault", it, took.Round(time.Millisecond))
					times = append(times, took)
				}
			}
			if len(times) > 0 {
				summary = append(summary, fmt.Sprintf("%-32s ttl %-4s time to write after the fault: %s", fc.name, fc.opts.ttl, durations(times)))
			}
		})
		if !ok {
			summary = append(summary, fc.name+": FAILED")
		}
	}
	t.Logf("failover summary:\n%s", strings.Join(summary, "\n"))
}

func nodeID(i int) string { return fmt.Sprintf("node%d", i+1) }

// failKillHolder kills the holder with -9 right after a commit it may not
// have uploaded, and measures how long until another node writes. The
// holder comes back as a replica; if its last commit never reached the
// bucket, its copy diverged and is set aside.
func failKillHolder(t *testing.T, c *failCluster, it int) time.Duration {
	h, o := it%3, (it+1)%3
	db := fmt.Sprintf("kill-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(h, db, createTable+insert(h, 1, 2, 3))
	c.waitDurable(h, db)
	c.mustSQL(h, db, insert(h, 4))
	start := time.Now()
	c.kill9(h)
	took := c.writeUntil(o, db, insert(o, 100), start)
	c.restart(h)
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 100}, setAsideOK: true})
	return took
}

// failKillSynchronousHolder is failKillHolder on a synchronous database
// (bucket.synchronous): each commit returned only once the bucket held it,
// so the holder killed right after one loses nothing, and its copy is
// never set aside.
func failKillSynchronousHolder(t *testing.T, c *failCluster, it int) time.Duration {
	h, o := it%3, (it+1)%3
	db := fmt.Sprintf("sync-kill-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(h, db, createTable+insert(h, 1, 2, 3))
	c.mustSQL(h, db, insert(h, 4))
	c.mustSQL(h, db, insert(h, 5))
	start := time.Now()
	c.kill9(h)
	took := c.writeUntil(o, db, insert(o, 100), start)
	c.restart(h)
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 4, 5, 100}})
	return took
}

// failMoveBack kills the holder of a database that prefers its region;
// another node takes the lease over and writes; the holder restarts and
// the lease moves back to it, drained, and it writes again.
func failMoveBack(t *testing.T, c *failCluster, it int) time.Duration {
	o := 1 + it%2
	db := fmt.Sprintf("home-move-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(0, db, createTable+insert(0, 1, 2, 3))
	c.waitDurable(0, db)
	c.mustSQL(0, db, insert(0, 4))
	start := time.Now()
	c.kill9(0)
	took := c.writeUntil(o, db, insert(o, 100), start)
	// Acknowledged, not waited for: the drain before the lease moves home
	// must carry them.
	c.mustSQL(o, db, insert(o, 101, 102))
	c.restart(0)
	c.waitHolder(o, db, "node1")
	c.writeUntil(0, db, insert(0, 200), time.Now())
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 100, 101, 102, 200}, setAsideOK: true})
	return took
}

// failIsolateHolder cuts the holder off from the lease authority. Another
// node takes the lease over after the TTL; from then on the cut-off node
// must refuse writes. After the partition heals it follows again.
func failIsolateHolder(t *testing.T, c *failCluster, it int) time.Duration {
	h, o := it%3, (it+1)%3
	db := fmt.Sprintf("iso-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(h, db, createTable+insert(h, 1, 2, 3))
	c.waitDurable(h, db)
	start := time.Now()
	c.isolate(h)
	took := c.writeUntil(o, db, insert(o, 100), start)
	if out, err := c.sql(h, db, insert(h, 5)); err == nil {
		c.heal()
		t.Fatalf("node%d wrote %s while cut off, after node%d took the lease over: split brain (%s)", h+1, db, o+1, out)
	}
	c.mustSQL(o, db, insert(o, 101))
	c.heal()
	if c.leases == "raft" {
		c.waitFor(fmt.Sprintf("node%d never followed a leader after the partition healed", h+1), func() bool {
			rep, err := clusterStatus(c.nodes[h])
			return err == nil && rep.Leader != "" && len(rep.Members) == len(c.nodes)
		})
	}
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 100, 101}})
	return took
}

// failIdleWALReplica keeps an idle WAL-mode connection open on a replica
// while it follows the holder, then hands the lease to that replica right
// after a commit; the replica writes with the connection still open.
func failIdleWALReplica(t *testing.T, c *failCluster, it int) time.Duration {
	h, r := it%3, (it+1)%3
	db := fmt.Sprintf("wal-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(h, db, "PRAGMA journal_mode=WAL;"+createTable+insert(h, 1, 2, 3))
	c.waitDurable(h, db)
	c.waitFor(fmt.Sprintf("node%d never read %s", r+1, db), func() bool {
		out, err := c.sql(r, db, "SELECT count(*) FROM t")
		return err == nil && out == "3"
	})
	app := startQueryShell(t, c.nodes[r].Path(db))
	defer app.in.Close()
	c.mustSQL(h, db, insert(h, 4, 5))
	c.waitFor(fmt.Sprintf("node%d never followed %s with an idle WAL connection open", r+1, db), func() bool {
		out, err := c.sql(r, db, "SELECT count(*) FROM t")
		return err == nil && out == "5"
	})
	if got := app.query(t, "SELECT count(*) FROM t"); got != "ok 5" {
		t.Fatalf("idle connection on node%d reads %q, want ok 5", r+1, got)
	}
	c.mustSQL(h, db, insert(h, 6))
	start := time.Now()
	if out, err := runFerry(t, "handoff", "-config", c.nodes[h].Config, db, nodeID(r)); err != nil {
		t.Fatalf("handoff %s to node%d: %v: %s", db, r+1, err, out)
	}
	took := c.writeUntil(r, db, insert(r, 100), start)
	if got := app.query(t, "SELECT count(*) FROM t"); got != "ok 7" {
		t.Fatalf("idle connection on node%d reads %q after its own write, want ok 7", r+1, got)
	}
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 4, 5, 6, 100}})
	return took
}

// failRejoin kills a holder that is not the Raft leader, lets another node
// take over, waits until the leader removes the dead node after
// dead-after, and restarts it: it rejoins, stays a member, and writes
// again once the lease is handed to it.
func failRejoin(t *testing.T, c *failCluster, it int) time.Duration {
	lead := c.leader(0)
	var others []int
	for i := range c.nodes {
		if i != lead {
			others = append(others, i)
		}
	}
	v := others[it%2]
	o := others[(it+1)%2]
	db := fmt.Sprintf("rejoin-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(v, db, createTable+insert(v, 1, 2, 3))
	c.waitDurable(v, db)
	start := time.Now()
	c.kill9(v)
	took := c.writeUntil(o, db, insert(o, 100), start)
	waitRemoved(c.raftCluster, c.nodes[o], nodeID(v))
	c.nodes[v].restart(t)
	c.down[v] = false
	assertRejoined(t, c.raftCluster, c.nodes[v], nodeID(v), c.nodes[o], 2*time.Second, db, "SELECT count(*) FROM t")
	if out, err := runFerry(t, "handoff", "-config", c.nodes[o].Config, db, nodeID(v)); err != nil {
		t.Fatalf("handoff %s to the rejoined node%d: %v: %s", db, v+1, err, out)
	}
	c.writeUntil(v, db, insert(v, 200), time.Now())
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3, 100, 200}})
	return took
}

// failBarredHandoff hands a database that prefers node1's region to a node
// elsewhere: the handoff fails, saying why, and node1 keeps the lease and
// writes. A handoff placement allows then moves another database, drained.
func failBarredHandoff(t *testing.T, c *failCluster, it int) time.Duration {
	db := fmt.Sprintf("home-barred-%d.db", it)
	watch := watchHistory(t, c.bucket, db)
	c.mustSQL(0, db, createTable+insert(0, 1, 2))
	c.waitHolder(2, db, "node1")
	to := 1 + it%2
	c.waitForLong("a member never showed as reachable", 30*time.Second, func() bool { return allHealthy(c.nodes[2]) })
	out, err := runFerry(t, "handoff", "-config", c.nodes[2].Config, db, nodeID(to))
	if err == nil || !strings.Contains(out, "prefers region") || strings.Contains(out, "handed") {
		var views string
		for i, m := range c.nodes {
			rep, err := clusterStatus(m)
			views += fmt.Sprintf("node%d: leader %s members %+v (%v)\n", i+1, rep.Leader, rep.Members, err)
		}
		t.Fatalf("handoff of %s to node%d, which placement bars: %v: %q, want an error saying it prefers region ams\n%s", db, to+1, err, out, views)
	}
	rep, err := clusterStatus(c.nodes[0])
	if h, _ := holderOf(rep, db); err != nil || h != "node1" {
		t.Fatalf("after a refused handoff of %s, holder %q (%v), want node1", db, h, err)
	}
	c.mustSQL(0, db, insert(0, 3))
	checkHistory(t, c, watch, historyCheck{name: db, acked: []int64{1, 2, 3}})

	// A handoff placement allows goes through, and the node handed to
	// writes at once: its catch-up and the restore its application's open
	// start race, and whichever is second must take up the other's file.
	h, dst := it%3, (it+1)%3
	free := fmt.Sprintf("free-%d.db", it)
	freeWatch := watchHistory(t, c.bucket, free)
	c.mustSQL(h, free, createTable+insert(h, 1, 2))
	c.mustSQL(h, free, insert(h, 3))
	if out, err := runFerry(t, "handoff", "-config", c.nodes[h].Config, free, nodeID(dst)); err != nil {
		t.Fatalf("handoff %s to node%d: %v: %s", free, dst+1, err, out)
	}
	c.writeUntil(dst, free, insert(dst, 100), time.Now())
	checkHistory(t, c, freeWatch, historyCheck{name: free, acked: []int64{1, 2, 3, 100}})
	return 0
}
