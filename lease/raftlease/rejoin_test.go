package raftlease

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// rejoinDeadAfter is short so a stopped node is removed quickly, and
// longer than the reaper's one-second tick so removal is observable.
const rejoinDeadAfter = time.Second

// followerOf returns a running node other than the leader.
func (c *cluster) followerOf(leader *testNode) *testNode {
	for _, tn := range c.nodes {
		if tn != leader && tn.m != nil {
			return tn
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// waitMembership waits until the leader's configuration includes id, or
// leaves it out, as want says.
func (c *cluster) waitMembership(leader *testNode, id string, want bool, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := leader.m.checkMember(id)
		if (err == nil) == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s member of the leader's configuration: want %v (%v)", id, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertStaysMember checks, for a while, that tn remains a member of the
// leader's configuration and keeps following a leader.
func (c *cluster) assertStaysMember(leader, tn *testNode, d time.Duration) {
	c.t.Helper()
	leaderless := time.Time{}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := leader.m.checkMember(tn.id); err != nil {
			c.t.Fatalf("%s removed again after rejoining: %v", tn.id, err)
		}
		if _, id := tn.m.raft.LeaderWithID(); id != "" {
			leaderless = time.Time{}
		} else if leaderless.IsZero() {
			leaderless = time.Now()
		} else if time.Since(leaderless) > 10*testElection {
			c.t.Fatalf("%s leaderless for %s after rejoining", tn.id, time.Since(leaderless))
		}
	}
}

// TestRejoinAfterDeadAfter restarts a node that the leader removed for
// being unreachable: it must join again, stay a member, and take a lease.
func TestRejoinAfterDeadAfter(t *testing.T) {
	{
		c := newCluster(t, 3, true, func(cfg *Config) { cfg.DeadAfter = rejoinDeadAfter })
		leader := c.waitLeader()
		victim := c.followerOf(leader)
		c.kill(victim)
		c.waitMembership(leader, victim.id, false, rejoinDeadAfter+10*time.Second)

		c.start(victim)
		c.waitMembership(leader, victim.id, true, 10*time.Second)
		c.assertStaysMember(leader, victim, 2*rejoinDeadAfter+time.Second)
		if n := leader.m.voters(); n != 3 {
			t.Fatalf("voters after rejoin = %d, want 3", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := victim.m.CheckWrite(ctx, "rejoin.db")
		cancel()
		if err != nil {
			t.Fatalf("rejoined node cannot take a lease: %v", err)
		}
	}
}

// TestRejoinAfterRemovalWhilePartitioned cuts a node off until the leader
// removes it. The node never learns of its removal and its own Raft state
// still lists it as a member; once the partition heals it must ask to
// join again rather than wait for a leader that no longer contacts it.
func TestRejoinAfterRemovalWhilePartitioned(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.DeadAfter = rejoinDeadAfter })
	leader := c.waitLeader()
	victim := c.followerOf(leader)
	c.partition(victim)
	c.waitMembership(leader, victim.id, false, rejoinDeadAfter+10*time.Second)
	c.heal()

	c.waitMembership(leader, victim.id, true, 10*time.Second)
	c.assertStaysMember(leader, victim, 2*rejoinDeadAfter+time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := victim.m.CheckWrite(ctx, "rejoin.db"); err != nil {
		t.Fatalf("rejoined node cannot take a lease: %v", err)
	}
}

// TestRestartWhileUnreachableFromLeader restarts a killed node shortly
// before the leader would remove it, with the leader's traffic to it cut
// but not its traffic to the leader, so its heartbeats cannot resume. Its
// join request shows it is alive: the leader must not then remove it as
// dead, and once the cut heals it must follow the leader and take a lease.
func TestRestartWhileUnreachableFromLeader(t *testing.T) {
	c := newCluster(t, 3, true, func(cfg *Config) { cfg.DeadAfter = rejoinDeadAfter })
	leader := c.waitLeader()
	victim := c.followerOf(leader)
	c.kill(victim)
	deadline := time.Now().Add(10 * time.Second)
	for !leader.m.health.failing(victim.id) {
		if time.Now().After(deadline) {
			t.Fatalf("leader never saw %s failing", victim.id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim.proxy.Partition()
	c.start(victim)
	for end := time.Now().Add(2*rejoinDeadAfter + time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := leader.m.checkMember(victim.id); err != nil {
			t.Fatalf("%s, which is up and calling in, was removed: %v", victim.id, err)
		}
	}
	c.heal()
	c.assertStaysMember(leader, victim, rejoinDeadAfter+time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := victim.m.CheckWrite(ctx, "rejoin.db"); err != nil {
		t.Fatalf("restarted node cannot take a lease: %v", err)
	}
}

// TestHealthForgetsFailuresOfRemovedMember replays the observations the
// leader sees when it removes an unreachable member: a heartbeat failure
// reported after the removal must not make the member count as long dead
// when it is added again and its heartbeats succeed from the start.
func TestHealthForgetsFailuresOfRemovedMember(t *testing.T) {
	h := newHealth()
	peer := raft.Server{ID: "node2", Address: "127.0.0.2:1"}
	old := time.Now().Add(-time.Hour)
	obs := func(d any) { h.observe(raft.Observation{Data: d}) }
	obs(raft.FailedHeartbeatObservation{PeerID: peer.ID, LastContact: old})
	obs(raft.PeerObservation{Peer: peer, Removed: true})
	obs(raft.FailedHeartbeatObservation{PeerID: peer.ID, LastContact: old})
	obs(raft.PeerObservation{Peer: peer})
	if d := h.failingFor(string(peer.ID), time.Now()); d != 0 {
		t.Fatalf("re-added member failing for %s", d)
	}
	// Until it is added, a late failure is ignored too.
	obs(raft.PeerObservation{Peer: peer, Removed: true})
	obs(raft.FailedHeartbeatObservation{PeerID: peer.ID, LastContact: old})
	h.added(string(peer.ID))
	if h.failing(string(peer.ID)) {
		t.Fatal("member added on join still failing")
	}
}
