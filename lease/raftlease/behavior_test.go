package raftlease

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
)

func TestSingleNodeBootstrapsWithoutConfig(t *testing.T) {
	m, err := Open(context.Background(), Config{Node: "solo", Bind: "127.0.0.1:0", Dir: t.TempDir(), TTL: testTTL,
		HeartbeatTimeout: testElection, ElectionTimeout: testElection, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	epoch, err := m.CheckWrite(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	if epoch == 0 {
		t.Fatal("zero epoch")
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "solo" || len(st.Members) != 1 || st.Members[0].Role != "leader" || st.Term == 0 {
		t.Fatalf("status = %+v", st)
	}
	if len(st.Leases) != 1 || st.Leases[0].Holder != "solo" || st.Leases[0].Epoch != epoch {
		t.Fatalf("leases = %+v", st.Leases)
	}
	if _, err := m.CheckWrite(ctx, "../etc/passwd"); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestCatchUpRunsBeforeFirstWrite(t *testing.T) {
	var calls atomic.Int32
	fail := atomic.Bool{}
	m, err := Open(context.Background(), Config{Node: "solo", Bind: "127.0.0.1:0", TTL: testTTL,
		HeartbeatTimeout: testElection, ElectionTimeout: testElection, Logger: testLogger(t),
		CatchUp: func(ctx context.Context, name string) error {
			calls.Add(1)
			if fail.Load() {
				return errors.New("bucket unreachable")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := m.CheckWrite(ctx, "x.db"); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("catch-up ran %d times, want 1", calls.Load())
	}
	fail.Store(true)
	_, err = m.CheckWrite(ctx, "y.db")
	if !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("CheckWrite after failed catch-up = %v, want ErrReadOnly", err)
	}
	if node, _, ok := m.Holder("y.db"); ok {
		t.Fatalf("lease kept by %s after failed catch-up", node)
	}
}

func TestHandoff(t *testing.T) {
	c := newCluster(t, 3, false, nil)
	a, b, other := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	epoch, err := a.m.CheckWrite(ctx, "h.db")
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan lease.Event, 16)
	stop := b.m.Watch(func(e lease.Event) {
		select {
		case events <- e:
		default:
		}
	})
	defer stop()

	if err := other.m.Handoff(ctx, "h.db", "nobody"); !errors.Is(err, lease.ErrUnknownNode) {
		t.Fatalf("handoff to unknown node = %v, want ErrUnknownNode", err)
	}
	// Ask a node that does not hold the lease: it goes to the holder.
	if err := other.m.Handoff(ctx, "h.db", b.id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		node, e, ok := other.m.Holder("h.db")
		if ok && node == b.id {
			if e <= epoch {
				t.Fatalf("epoch after handoff %d not above %d", e, epoch)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder after handoff: %q ok=%v", node, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := a.m.CheckWrite(ctx, "h.db"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("old holder CheckWrite = %v, want ErrHeld", err)
	}
	if _, err := b.m.CheckWrite(ctx, "h.db"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-events:
	case <-time.After(time.Second):
		t.Fatal("no lease event seen by watcher")
	}
}

func TestCleanShutdownReleasesAtOnce(t *testing.T) {
	c := newCluster(t, 3, false, nil)
	a := c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.m.CheckWrite(ctx, "s.db"); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Close(); err != nil {
		t.Fatal(err)
	}
	a.m = nil
	// Well inside the TTL, another node may write.
	c.acquireAny("s.db", a, testTTL/2)
}

func TestVoterCapAndDeadNodeRemoval(t *testing.T) {
	c := newCluster(t, 4, false, func(cfg *Config) {
		cfg.MaxVoters = 3
		cfg.DeadAfter = time.Second
	})
	leader := c.waitLeader()
	count := func(st lease.Status) (voters int) {
		for _, mb := range st.Members {
			if mb.Voter {
				voters++
			}
		}
		return voters
	}
	st, err := leader.m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 4 || count(st) != 3 {
		t.Fatalf("members = %+v", st.Members)
	}
	// Kill a voter other than the leader: two of three voters keep a
	// quorum, the leader removes the dead one after DeadAfter and promotes
	// the non-voter.
	var victim *testNode
	for _, mb := range st.Members {
		if mb.Voter && mb.ID != leader.id {
			victim = c.node(mb.ID)
			break
		}
	}
	c.kill(victim)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err = leader.m.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Members) == 3 && count(st) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members after removal = %+v", st.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, mb := range st.Members {
		if mb.ID == victim.id {
			t.Fatalf("dead node still a member: %+v", st.Members)
		}
	}
}

// TestGarbageOnRaftPort sends junk to the Raft port, as a port scanner or
// a misconfigured peer would; the node must keep serving.
func TestGarbageOnRaftPort(t *testing.T) {
	c := newCluster(t, 3, false, nil)
	tn := c.nodes[0]
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 60; i++ {
		conn, err := net.DialTimeout("tcp", tn.real, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 1+rng.Intn(4096))
		rng.Read(junk)
		switch i % 3 {
		case 0:
			junk[0] = protoRaft
		case 1:
			junk[0] = protoRPC
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		conn.Write(junk)
		conn.Close()
	}
	// A well-formed request for something that does not exist gets an
	// error back, not a crash.
	conn, err := net.DialTimeout("tcp", tn.real, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte{protoRPC})
	conn.Write([]byte(`{"op":"apply","command":{"op":"steal","name":"x.db","node":"evil"}}`))
	var resp rpcResponse
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if resp.Error == "" {
		t.Fatalf("unknown command accepted: %+v", resp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tn.m.CheckWrite(ctx, "after-junk.db"); err != nil {
		t.Fatalf("node broken by junk: %v", err)
	}
	c.waitLeader()
}

// TestLeaseMovesToPreferredRegion starts with the preferred region's only
// node down, lets a node elsewhere take the lease, and checks that the
// lease moves home once that node is back.
func TestLeaseMovesToPreferredRegion(t *testing.T) {
	c := newCluster(t, 3, true, func(cfg *Config) {
		cfg.Placement = lease.Placement{Preferred: []lease.RegionRule{{Pattern: "pref/*", Region: "r3"}}}
	})
	home := c.nodes[2] // region r3
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Regions are known once each node has registered through the log.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, ok := c.nodes[0].m.fsm.node(home.id); ok && n.Region == "r3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node3's region never registered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.nodes[0].m.CheckWrite(ctx, "pref/a.db"); !errors.Is(err, lease.ErrNotCandidate) {
		t.Fatalf("acquire outside the preferred region while it is up = %v", err)
	}
	c.kill(home)
	// A follower outside the region takes it once the leader sees node3
	// down: the leader, not the follower, judges who is up.
	deadline := time.Now().Add(15 * time.Second)
	var leader string
	for leader == "" || leader == home.id {
		if time.Now().After(deadline) {
			t.Fatal("no new leader")
		}
		time.Sleep(20 * time.Millisecond)
		_, id := c.nodes[0].m.raft.LeaderWithID()
		leader = string(id)
	}
	away := c.nodes[0]
	if away.id == leader {
		away = c.nodes[1]
	}
	for {
		_, err := away.m.CheckWrite(ctx, "pref/a.db")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower outside the preferred region never took the lease while it was down: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	epoch, _ := away.m.CheckWrite(ctx, "pref/a.db")
	c.start(home)
	deadline = time.Now().Add(15 * time.Second)
	for {
		if node, e, ok := home.m.Holder("pref/a.db"); ok && node == home.id {
			if e <= epoch {
				t.Fatalf("epoch %d after moving home, was %d", e, epoch)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease did not move to its preferred region")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := away.m.CheckWrite(ctx, "pref/a.db"); !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("old holder after the move = %v", err)
	}
}

// TestDiscoveryByDNS forms a cluster from a DNS name, the way Fly.io's
// <app>.internal lists every machine. "localhost" stands in for it: it
// resolves to this node alone, so the node bootstraps.
func TestDiscoveryByDNS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	m, err := Open(context.Background(), Config{Node: "dns", Listener: ln, Discovery: "localhost", DiscoveryPort: p,
		TTL: testTTL, HeartbeatTimeout: testElection, ElectionTimeout: testElection, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	peers, complete := m.peers(context.Background())
	if !complete {
		t.Fatal("lookup of localhost failed")
	}
	for _, peer := range peers {
		if peer == m.Addr() {
			t.Fatalf("peers include the node itself: %v", peer)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.CheckWrite(ctx, "d.db"); err != nil {
		t.Fatal(err)
	}
}

// TestUnregisteredMemberHoldsPreference: while a member's region is not
// known yet (a node registers it as it joins, the bootstrapping node just
// after it leads), the leader cannot tell whether the preferred region is
// up, so a node elsewhere must not take the lease.
func TestUnregisteredMemberHoldsPreference(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.Placement = lease.Placement{Preferred: []lease.RegionRule{{Pattern: "pref/*", Region: "r1"}}}
	})
	leader := c.waitLeader()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, ok := leader.m.fsm.node("node1")
		if ok && n.Region == "r1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node1's region never registered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Forget node1's registration on the leader, as before it registered.
	leader.m.fsm.mu.Lock()
	delete(leader.m.fsm.st.Nodes, "node1")
	leader.m.fsm.mu.Unlock()
	away := c.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := away.m.CheckWrite(ctx, "pref/a.db"); !errors.Is(err, lease.ErrNotCandidate) {
		t.Fatalf("acquire outside the preferred region while a member's region is unknown = %v, want ErrNotCandidate", err)
	}
}
