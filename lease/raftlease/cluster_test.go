package raftlease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/faultproxy"
	"github.com/ferrydb/ferry/lease"
)

// Test timings: short enough to keep the suite fast, long enough that a
// loaded CI machine does not see spurious elections.
const (
	testTTL      = time.Second
	testElection = 300 * time.Millisecond
)

// testNode is one in-process node. Its Raft port sits behind a fault
// proxy, and it dials out from its own loopback IP so other nodes'
// proxies can tell its traffic apart.
type testNode struct {
	id    string
	ip    string
	real  string // the node's own listener address
	proxy *faultproxy.Proxy
	dir   string
	m     *Manager
}

type cluster struct {
	t       *testing.T
	nodes   []*testNode
	persist bool
	tweak   func(*Config)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts n nodes on 127.0.0.(base+i).
func newCluster(t *testing.T, n int, persist bool, tweak func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, persist: persist, tweak: tweak}
	base := 10 + int(time.Now().UnixNano()%200)
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", 1+i, base)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		p, err := faultproxy.New(ip+":0", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		tn := &testNode{id: fmt.Sprintf("node%d", i+1), ip: ip, real: ln.Addr().String(), proxy: p}
		if persist {
			tn.dir = t.TempDir()
		}
		ln.Close()
		c.nodes = append(c.nodes, tn)
	}
	for _, tn := range c.nodes {
		c.start(tn)
	}
	t.Cleanup(func() {
		for _, tn := range c.nodes {
			if tn.m != nil {
				tn.m.shutdown(false)
			}
		}
	})
	c.waitLeader()
	return c
}

func (c *cluster) peers() []string {
	var out []string
	for _, tn := range c.nodes {
		out = append(out, tn.proxy.Addr())
	}
	return out
}

func (c *cluster) start(tn *testNode) {
	c.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a stop
		if ln, err = net.Listen("tcp", tn.real); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		Node: tn.id, Region: "r" + tn.id[len(tn.id)-1:], Listener: ln, Advertise: tn.proxy.Addr(),
		Dir: tn.dir, Peers: c.peers(), TTL: testTTL, AcquireTimeout: 3 * time.Second,
		HeartbeatTimeout: testElection, ElectionTimeout: testElection,
		Logger: testLogger(c.t).With("node", tn.id),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	m, err := Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", tn.id, err)
	}
	tn.m = m
}

// waitLeader waits until every running node agrees on a leader and has
// joined, and returns the leader.
func (c *cluster) waitLeader() *testNode {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var leader string
		agree := true
		running := 0
		for _, tn := range c.nodes {
			if tn.m == nil {
				continue
			}
			running++
			_, id := tn.m.raft.LeaderWithID()
			if id == "" || (leader != "" && string(id) != leader) {
				agree = false
				break
			}
			leader = string(id)
		}
		if agree && leader != "" {
			if l := c.node(leader); l != nil && l.m != nil && l.m.voters()+nonvoters(l.m) == running {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("cluster did not settle on a leader with every node joined")
	return nil
}

func nonvoters(m *Manager) int {
	cf := m.raft.GetConfiguration()
	if cf.Error() != nil {
		return 0
	}
	return len(cf.Configuration().Servers) - m.voters()
}

func (c *cluster) node(id string) *testNode {
	for _, tn := range c.nodes {
		if tn.id == id {
			return tn
		}
	}
	return nil
}

// kill stops tn as a crash would: no release, no leadership transfer.
func (c *cluster) kill(tn *testNode) {
	c.t.Helper()
	if err := tn.m.shutdown(false); err != nil {
		c.t.Logf("kill %s: %v", tn.id, err)
	}
	tn.m = nil
}

// partition cuts tn off from every other node in both directions.
func (c *cluster) partition(tn *testNode) {
	tn.proxy.Partition()
	for _, o := range c.nodes {
		if o != tn {
			o.proxy.Block(tn.ip)
		}
	}
}

func (c *cluster) heal() {
	for _, o := range c.nodes {
		o.proxy.Heal()
	}
}

// acquireAny retries CheckWrite on every running node except skip until
// one succeeds, and returns it with its epoch.
func (c *cluster) acquireAny(name string, skip *testNode, within time.Duration) (*testNode, uint64) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		for _, tn := range c.nodes {
			if tn == skip || tn.m == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			epoch, err := tn.m.CheckWrite(ctx, name)
			cancel()
			if err == nil {
				return tn, epoch
			}
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no node acquired %q within %s: %v", name, within, last)
	return nil, 0
}

// assertNoOverlap checks, from both nodes' own records, that old's tenure
// under oldEpoch ended before new's tenure under newEpoch began.
func assertNoOverlap(t *testing.T, name string, old *Manager, oldEpoch uint64, nw *Manager, newEpoch uint64) {
	t.Helper()
	var o, n *lease.Interval
	for _, iv := range old.Intervals(name) {
		if iv.Epoch == oldEpoch {
			o = &iv
		}
	}
	for _, iv := range nw.Intervals(name) {
		if iv.Epoch == newEpoch {
			n = &iv
		}
	}
	if o == nil || n == nil {
		t.Fatalf("missing intervals: old %v new %v", old.Intervals(name), nw.Intervals(name))
	}
	if !o.Until.Before(n.Granted) {
		t.Fatalf("tenures overlap: old epoch %d valid until %s, new epoch %d granted %s",
			oldEpoch, o.Until.Format(time.StampMicro), newEpoch, n.Granted.Format(time.StampMicro))
	}
	if !o.LastWrite.IsZero() && !o.LastWrite.Before(n.Granted) {
		t.Fatalf("old holder wrote at %s, after the new grant at %s", o.LastWrite.Format(time.StampMicro), n.Granted.Format(time.StampMicro))
	}
	t.Logf("old epoch %d: granted %s, until %s, last write %s; new epoch %d granted %s (gap %s)",
		oldEpoch, o.Granted.Format(time.StampMilli), o.Until.Format(time.StampMilli), o.LastWrite.Format(time.StampMilli),
		newEpoch, n.Granted.Format(time.StampMilli), n.Granted.Sub(o.Until))
}

func TestKillHolder(t *testing.T) {
	c := newCluster(t, 3, false, nil)
	leader := c.waitLeader()
	// The leader holds the lease, so killing it loses both at once.
	epoch, err := leader.m.CheckWrite(context.Background(), "tenant-1.db")
	if err != nil {
		t.Fatal(err)
	}
	c.kill(leader)
	killed := time.Now()
	// TTL plus an election, with room for a loaded machine.
	tn, epoch2 := c.acquireAny("tenant-1.db", leader, testTTL+20*testElection)
	took := time.Since(killed)
	if epoch2 <= epoch {
		t.Fatalf("new epoch %d not above old %d", epoch2, epoch)
	}
	t.Logf("%s took over in %s with epoch %d (was %d)", tn.id, took, epoch2, epoch)
	if node, e, ok := tn.m.Holder("tenant-1.db"); !ok || node != tn.id || e != epoch2 {
		t.Fatalf("Holder = %q, %d, %v", node, e, ok)
	}
}

func TestPartitionHolderNoOverlap(t *testing.T) {
	for _, holderIsLeader := range []bool{true, false} {
		t.Run(fmt.Sprintf("leader=%v", holderIsLeader), func(t *testing.T) {
			c := newCluster(t, 3, false, nil)
			leader := c.waitLeader()
			holder := leader
			if !holderIsLeader {
				for _, tn := range c.nodes {
					if tn != leader {
						holder = tn
						break
					}
				}
			}
			const name = "eu/tenant-7.db"
			epoch, err := holder.m.CheckWrite(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			// The holder keeps writing throughout, as an application would.
			stop := make(chan struct{})
			done := make(chan int)
			go func() {
				refused := 0
				for i := 0; i < 100000; i++ {
					select {
					case <-stop:
						done <- refused
						return
					case <-time.After(2 * time.Millisecond):
					}
					ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
					if _, err := holder.m.CheckWrite(ctx, name); err != nil {
						if !errors.Is(err, ferry.ErrReadOnly) {
							t.Errorf("CheckWrite error does not wrap ErrReadOnly: %v", err)
						}
						refused++
					}
					cancel()
				}
				done <- refused
			}()
			time.Sleep(testTTL / 2)
			c.partition(holder)
			tn, epoch2 := c.acquireAny(name, holder, testTTL+20*testElection)
			time.Sleep(testTTL / 2)
			close(stop)
			refused := <-done
			if refused == 0 {
				t.Fatal("partitioned holder never refused a write")
			}
			if epoch2 <= epoch {
				t.Fatalf("new epoch %d not above old %d", epoch2, epoch)
			}
			assertNoOverlap(t, name, holder.m, epoch, tn.m, epoch2)

			// Once healed, the old holder learns of the new one and stays
			// read-only.
			c.heal()
			deadline := time.Now().Add(10 * time.Second)
			for {
				node, e, ok := holder.m.Holder(name)
				if ok && node == tn.id && e == epoch2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("old holder sees %q epoch %d ok=%v", node, e, ok)
				}
				time.Sleep(20 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := holder.m.CheckWrite(ctx, name); !errors.Is(err, lease.ErrHeld) || !errors.Is(err, ferry.ErrReadOnly) {
				t.Fatalf("old holder CheckWrite = %v, want ErrHeld", err)
			}
		})
	}
}

func TestLeaseTableSurvivesRestart(t *testing.T) {
	c := newCluster(t, 3, true, nil)
	leader := c.waitLeader()
	var holder *testNode
	for _, tn := range c.nodes {
		if tn != leader {
			holder = tn
		}
	}
	epoch, err := holder.m.CheckWrite(context.Background(), "a.db")
	if err != nil {
		t.Fatal(err)
	}
	// Force a snapshot on one node so both the snapshot and the log replay
	// paths are exercised.
	if err := leader.m.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.m.CheckWrite(context.Background(), "b.db"); err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		c.kill(tn)
	}
	for _, tn := range c.nodes {
		c.start(tn)
	}
	c.waitLeader()
	for _, tn := range c.nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, ok := tn.m.fsm.get("a.db")
			_, okb := tn.m.fsm.get("b.db")
			if ok && okb && l.Holder == holder.id && l.Epoch == epoch {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after restart: a.db = %+v (found %v), b.db found %v", tn.id, l, ok, okb)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The restarted holder lost its in-memory tenure, so it must take a
	// fresh grant with a higher epoch once the old one expires.
	tn, epoch2 := c.acquireAny("a.db", nil, testTTL+10*testElection)
	if epoch2 <= epoch {
		t.Fatalf("epoch after restart %d not above %d (node %s)", epoch2, epoch, tn.id)
	}
}
