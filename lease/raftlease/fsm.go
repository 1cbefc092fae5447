package raftlease

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ferrydb/ferry/lease"
)

// Command operations in the Raft log.
const (
	opGrant    = "grant"
	opExtend   = "extend"
	opRevoke   = "revoke"
	opRegister = "register"
)

// command is one Raft log entry. Now is stamped by the leader when it
// proposes the entry, so every node applies the same time and the state
// machine stays deterministic.
type command struct {
	Op         string `json:"op"`
	Name       string `json:"name,omitempty"`
	Node       string `json:"node"`
	Epoch      uint64 `json:"epoch,omitempty"`
	Now        int64  `json:"now,omitempty"`
	TTL        int64  `json:"ttl,omitempty"`
	ReserveFor string `json:"reserveFor,omitempty"`
	Region     string `json:"region,omitempty"`
	Addr       string `json:"addr,omitempty"`
	// URL is a registering node's advertised HTTP URL, where it serves
	// the peer stream.
	URL string `json:"url,omitempty"`
	// Prefer, on a grant, is the database's preferred region when the
	// requester is outside it; the leader refuses the grant while a
	// candidate in that region is up. Only the leader knows who is up.
	Prefer string `json:"prefer,omitempty"`
}

// entry is one database's row in the lease table.
type entry struct {
	Holder        string `json:"holder,omitempty"`
	Epoch         uint64 `json:"epoch"`
	Expires       int64  `json:"expires,omitempty"`
	ReservedFor   string `json:"reservedFor,omitempty"`
	ReservedUntil int64  `json:"reservedUntil,omitempty"`
}

func (e entry) lease(name string) lease.Lease {
	l := lease.Lease{Name: name, Holder: e.Holder, Epoch: e.Epoch, ReservedFor: e.ReservedFor}
	if e.Expires != 0 {
		l.Expires = time.Unix(0, e.Expires)
	}
	if e.ReservedUntil != 0 {
		l.ReservedUntil = time.Unix(0, e.ReservedUntil)
	}
	return l
}

// nodeInfo is what a node registers about itself.
type nodeInfo struct {
	Region string `json:"region,omitempty"`
	Addr   string `json:"addr,omitempty"`
	URL    string `json:"url,omitempty"`
}

// applyResult is what Apply returns for a lease command.
type applyResult struct {
	Lease lease.Lease
	Err   error
}

// state is the whole replicated state, and the snapshot format.
type state struct {
	Leases map[string]entry    `json:"leases"`
	Nodes  map[string]nodeInfo `json:"nodes"`
}

// fsm is the lease table. Its Apply never fails the log: a malformed or
// refused command yields an error result for the proposer only.
type fsm struct {
	mu     sync.RWMutex
	st     state
	notify func(lease.Lease)
}

func newFSM(notify func(lease.Lease)) *fsm {
	return &fsm{st: state{Leases: map[string]entry{}, Nodes: map[string]nodeInfo{}}, notify: notify}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) interface{} {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return applyResult{Err: fmt.Errorf("decode lease command at index %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	res, changed := f.applyLocked(l.Index, c)
	f.mu.Unlock()
	if changed && f.notify != nil {
		f.notify(res.Lease)
	}
	return res
}

func (f *fsm) applyLocked(index uint64, c command) (applyResult, bool) {
	if c.Op == opRegister {
		f.st.Nodes[c.Node] = nodeInfo{Region: c.Region, Addr: c.Addr, URL: c.URL}
		return applyResult{}, false
	}
	if c.Name == "" || c.Node == "" {
		return applyResult{Err: errors.New("lease command without database or node")}, false
	}
	e := f.st.Leases[c.Name]
	switch c.Op {
	case opGrant:
		if e.Holder != "" && e.Holder != c.Node && c.Now < e.Expires {
			return applyResult{Err: fmt.Errorf("%q holds %q until %s: %w", e.Holder, c.Name, time.Unix(0, e.Expires).UTC().Format(time.RFC3339Nano), lease.ErrHeld)}, false
		}
		if e.ReservedFor != "" && e.ReservedFor != c.Node && c.Now < e.ReservedUntil {
			return applyResult{Err: fmt.Errorf("%q is being handed off to %q: %w", c.Name, e.ReservedFor, lease.ErrHeld)}, false
		}
		// The log index is a fencing token that only grows, even across
		// releases and leader changes.
		e = entry{Holder: c.Node, Epoch: max(index, e.Epoch+1), Expires: c.Now + c.TTL}
	case opExtend:
		if e.Holder != c.Node || e.Epoch != c.Epoch || c.Now >= e.Expires {
			return applyResult{Err: fmt.Errorf("renew %q epoch %d: now held by %q epoch %d: %w", c.Name, c.Epoch, e.Holder, e.Epoch, lease.ErrLost)}, false
		}
		e.Expires = max(e.Expires, c.Now+c.TTL)
		f.st.Leases[c.Name] = e
		return applyResult{Lease: e.lease(c.Name)}, false
	case opRevoke:
		if e.Holder != c.Node || e.Epoch != c.Epoch {
			return applyResult{Err: fmt.Errorf("release %q epoch %d: now held by %q epoch %d: %w", c.Name, c.Epoch, e.Holder, e.Epoch, lease.ErrLost)}, false
		}
		e = entry{Epoch: e.Epoch}
		if c.ReserveFor != "" {
			e.ReservedFor, e.ReservedUntil = c.ReserveFor, c.Now+c.TTL
		}
	default:
		return applyResult{Err: fmt.Errorf("unknown lease command %q", c.Op)}, false
	}
	f.st.Leases[c.Name] = e
	return applyResult{Lease: e.lease(c.Name)}, true
}

// get returns database name's row.
func (f *fsm) get(name string) (lease.Lease, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.st.Leases[name]
	if !ok {
		return lease.Lease{}, false
	}
	return e.lease(name), true
}

// leases returns every row, sorted by name.
func (f *fsm) leases() []lease.Lease {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]lease.Lease, 0, len(f.st.Leases))
	for name, e := range f.st.Leases {
		out = append(out, e.lease(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// node returns what node registered.
func (f *fsm) node(id string) (nodeInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.st.Nodes[id]
	return n, ok
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{st: state{Leases: maps.Clone(f.st.Leases), Nodes: maps.Clone(f.st.Nodes)}}, nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st state
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("decode lease table snapshot: %w", err)
	}
	if st.Leases == nil {
		st.Leases = map[string]entry{}
	}
	if st.Nodes == nil {
		st.Nodes = map[string]nodeInfo{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

type snapshot struct{ st state }

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.st); err != nil {
		sink.Cancel()
		return fmt.Errorf("write lease table snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}
