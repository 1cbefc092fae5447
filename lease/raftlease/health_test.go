package raftlease

import (
	"context"
	"testing"
	"time"

	"github.com/ferrydb/ferry/lease"
	"github.com/hashicorp/raft"
)

// leaderID returns the leader m knows of.
func (m *Manager) leaderID() raft.ServerID {
	_, id := m.raft.LeaderWithID()
	return id
}

// failingIn returns the IDs st reports unreachable.
func failingIn(st lease.Status) map[string]bool {
	out := map[string]bool{}
	for _, mb := range st.Members {
		if mb.Failing {
			out[mb.ID] = true
		}
	}
	return out
}

// waitFailing polls tn's status until it reports exactly want unreachable.
func waitFailing(t *testing.T, tn *testNode, want ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got map[string]bool
	for {
		st, err := tn.m.Status(context.Background())
		if err != nil {
			t.Fatalf("status on %s: %v", tn.id, err)
		}
		got = failingIn(st)
		match := len(got) == len(want)
		for _, id := range want {
			match = match && got[id]
		}
		if match {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status on %s reports unreachable %v, want %v (members %+v)", tn.id, got, want, st.Members)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFollowerStatusShowsDeadMember: only the leader sends heartbeats, so
// only it sees a member die; a follower's status must show that too.
func TestFollowerStatusShowsDeadMember(t *testing.T) {
	c := newCluster(t, 3, false, nil)
	leader := c.waitLeader()
	var follower, victim *testNode
	for _, tn := range c.nodes {
		switch {
		case tn == leader:
		case victim == nil:
			victim = tn
		default:
			follower = tn
		}
	}
	waitFailing(t, follower)
	c.kill(victim)
	waitFailing(t, leader, victim.id)
	waitFailing(t, follower, victim.id)

	// The member comes back: every view shows it healthy again.
	c.start(victim)
	waitFailing(t, leader)
	waitFailing(t, follower)
	waitFailing(t, victim)

	// The leader dies: the new leader's heartbeats to it fail, and both
	// survivors show it.
	c.kill(leader)
	deadline := time.Now().Add(15 * time.Second)
	for c.node(string(victim.m.leaderID())) == nil || c.node(string(victim.m.leaderID())).m == nil {
		if time.Now().After(deadline) {
			t.Fatal("no new leader among the survivors")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tn := range c.nodes {
		if tn.m != nil {
			waitFailing(t, tn, leader.id)
		}
	}
}
