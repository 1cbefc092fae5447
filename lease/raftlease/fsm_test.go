package raftlease

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ferrydb/ferry/lease"
)

func applyCmd(f *fsm, index uint64, c command) applyResult {
	b, _ := json.Marshal(c)
	return f.Apply(&raft.Log{Index: index, Data: b}).(applyResult)
}

func TestFSMRules(t *testing.T) {
	f := newFSM(nil)
	now := time.Now().UnixNano()
	ttl := int64(time.Second)
	r := applyCmd(f, 10, command{Op: opGrant, Name: "a.db", Node: "n1", Now: now, TTL: ttl})
	if r.Err != nil || r.Lease.Epoch != 10 || r.Lease.Holder != "n1" {
		t.Fatalf("grant: %+v", r)
	}
	if r := applyCmd(f, 11, command{Op: opGrant, Name: "a.db", Node: "n2", Now: now + ttl/2, TTL: ttl}); !errors.Is(r.Err, lease.ErrHeld) {
		t.Fatalf("grant while held: %+v", r)
	}
	if r := applyCmd(f, 12, command{Op: opExtend, Name: "a.db", Node: "n1", Epoch: 9, Now: now, TTL: ttl}); !errors.Is(r.Err, lease.ErrLost) {
		t.Fatalf("extend with wrong epoch: %+v", r)
	}
	if r := applyCmd(f, 13, command{Op: opExtend, Name: "a.db", Node: "n1", Epoch: 10, Now: now + ttl/2, TTL: ttl}); r.Err != nil || r.Lease.Expires.UnixNano() != now+ttl/2+ttl {
		t.Fatalf("extend: %+v", r)
	}
	// Expired: another node takes it with a higher epoch, and the old
	// holder can no longer renew.
	late := now + 3*ttl
	if r := applyCmd(f, 14, command{Op: opGrant, Name: "a.db", Node: "n2", Now: late, TTL: ttl}); r.Err != nil || r.Lease.Epoch != 14 {
		t.Fatalf("takeover: %+v", r)
	}
	if r := applyCmd(f, 15, command{Op: opExtend, Name: "a.db", Node: "n1", Epoch: 10, Now: late, TTL: ttl}); !errors.Is(r.Err, lease.ErrLost) {
		t.Fatalf("stale extend: %+v", r)
	}
	// Handoff reserves the lease for its target.
	if r := applyCmd(f, 16, command{Op: opRevoke, Name: "a.db", Node: "n2", Epoch: 14, Now: late, TTL: ttl, ReserveFor: "n3"}); r.Err != nil {
		t.Fatalf("revoke: %+v", r)
	}
	if r := applyCmd(f, 17, command{Op: opGrant, Name: "a.db", Node: "n1", Now: late, TTL: ttl}); !errors.Is(r.Err, lease.ErrHeld) {
		t.Fatalf("grant to non-target during handoff: %+v", r)
	}
	if r := applyCmd(f, 18, command{Op: opGrant, Name: "a.db", Node: "n3", Now: late, TTL: ttl}); r.Err != nil || r.Lease.Epoch != 18 {
		t.Fatalf("grant to target: %+v", r)
	}

	// Snapshot and restore carry the table.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil)
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil {
		t.Fatal(err)
	}
	if l, ok := g.get("a.db"); !ok || l.Holder != "n3" || l.Epoch != 18 {
		t.Fatalf("restored: %+v", l)
	}
	if err := g.Restore(io.NopCloser(strings.NewReader("{garbage"))); err == nil {
		t.Fatal("garbage snapshot restored")
	}
	if l, ok := g.get("a.db"); !ok || l.Epoch != 18 {
		t.Fatal("failed restore damaged the table")
	}
}

// TestFSMJunk applies random bytes and random commands: the FSM answers
// with errors, never panics, and epochs never go down.
func TestFSMJunk(t *testing.T) {
	f := newFSM(nil)
	rng := rand.New(rand.NewSource(7))
	ops := []string{opGrant, opExtend, opRevoke, opRegister, "", "bogus"}
	last := map[string]uint64{}
	for i := uint64(1); i <= 5000; i++ {
		var data []byte
		if rng.Intn(4) == 0 {
			data = make([]byte, rng.Intn(64))
			rng.Read(data)
		} else {
			c := command{Op: ops[rng.Intn(len(ops))], Name: []string{"", "a.db", "b.db"}[rng.Intn(3)],
				Node: []string{"", "n1", "n2"}[rng.Intn(3)], Epoch: uint64(rng.Intn(int(i) + 1)),
				Now: rng.Int63n(1 << 40), TTL: rng.Int63n(1 << 30)}
			data, _ = json.Marshal(c)
		}
		if _, ok := f.Apply(&raft.Log{Index: i, Data: data}).(applyResult); !ok {
			t.Fatal("Apply returned something other than applyResult")
		}
		for _, l := range f.leases() {
			if l.Epoch < last[l.Name] {
				t.Fatalf("epoch of %s went down: %d after %d", l.Name, l.Epoch, last[l.Name])
			}
			last[l.Name] = l.Epoch
		}
	}
}

type memSink struct{ strings.Builder }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
