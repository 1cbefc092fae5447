package raftlease

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

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
