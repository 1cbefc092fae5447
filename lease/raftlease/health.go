package raftlease

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// healthTimeout bounds how long a follower's status waits for the leader
// to say which members are unreachable.
const healthTimeout = time.Second

// health tracks which members the leader fails to reach, from Raft's
// heartbeat observations.
type health struct {
	ch    chan raft.Observation
	mu    sync.Mutex
	since map[string]time.Time
	// removed holds members taken out of the configuration. Raft stops a
	// removed member's heartbeats only after the removal, so a last
	// failure may be reported afterwards; it must not count against the
	// node when it joins again.
	removed map[string]bool
}

func newHealth() *health {
	return &health{
		ch:      make(chan raft.Observation, 64),
		since:   make(map[string]time.Time),
		removed: make(map[string]bool),
	}
}

func (h *health) failing(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.since[id]
	return ok
}

// failingFor returns how long id has been unreachable.
func (h *health) failingFor(id string, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.since[id]
	if !ok {
		return 0
	}
	return now.Sub(t)
}

// added forgets what is known about id's reachability: it has just been
// made a member, and earlier failures belong to its previous membership.
func (h *health) added(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, id)
	delete(h.removed, id)
}

// alive restarts the clock of a failing member that has just called in.
// The member stays failing, since the leader still cannot reach it, but
// it is not dead: a node that can ask to join must not be removed for
// having been silent before.
func (h *health) alive(id string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.since[id]; ok {
		h.since[id] = now
	}
}

func (h *health) observe(o raft.Observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		id := string(d.PeerID)
		if _, ok := h.since[id]; !ok && !h.removed[id] {
			h.since[id] = d.LastContact
		}
	case raft.ResumedHeartbeatObservation:
		delete(h.since, string(d.PeerID))
	case raft.LeaderObservation:
		// Only a leader sends heartbeats; a new leader starts fresh.
		clear(h.since)
		clear(h.removed)
	case raft.PeerObservation:
		id := string(d.Peer.ID)
		delete(h.since, id)
		if d.Removed {
			h.removed[id] = true
		} else {
			delete(h.removed, id)
		}
	}
}

// ids returns the members currently failing, sorted.
func (h *health) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.since))
	for id := range h.since {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// failingVia returns the members the leader's heartbeats fail to reach,
// asking the leader when this node is not it.
func (m *Manager) failingVia(ctx context.Context, hops int) ([]string, error) {
	if m.raft.State() == raft.Leader {
		return m.health.ids(), nil
	}
	addr, _ := m.raft.LeaderWithID()
	if addr == "" || hops >= maxHops {
		return nil, errNoLeader
	}
	resp, err := m.exchange(ctx, string(addr), rpcRequest{Op: rpcHealth, Hops: hops + 1})
	return resp.Failing, err
}

// unreachable returns the members this node's status reports unreachable.
// Only the leader sends heartbeats, so only it sees a member stop
// answering; a follower asks it, and reports the leader itself
// unreachable when it cannot get an answer from it.
func (m *Manager) unreachable(ctx context.Context, leader raft.ServerID) map[string]bool {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	ids, err := m.failingVia(ctx, 0)
	var remote *remoteError
	switch {
	case err == nil:
	case errors.Is(err, errNoLeader) || errors.As(err, &remote):
		// No leader, or it answered but could not tell: nobody knows.
		m.log.Debug("member health unknown", "leader", leader, "err", err)
		return nil
	default:
		m.log.Debug("ask the leader for member health", "leader", leader, "err", err)
		ids = []string{string(leader)}
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}
