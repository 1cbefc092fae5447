package lease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// memAuthority is an in-memory Authority for unit tests of the Keeper;
// the real authorities are tested in raftlease and s3lease.
type memAuthority struct {
	mu      sync.Mutex
	leases  map[string]Lease
	node    string
	ttl     time.Duration
	down    bool // every call fails as if unreachable
	epoch   uint64
	revoked []string
}

func newMem(node string, ttl time.Duration) *memAuthority {
	return &memAuthority{leases: map[string]Lease{}, node: node, ttl: ttl}
}

func (a *memAuthority) Grant(ctx context.Context, name string) (Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return Lease{}, errors.New("unreachable")
	}
	if l := a.leases[name]; l.Held(time.Now()) && l.Holder != a.node {
		return Lease{}, fmt.Errorf("held by %s: %w", l.Holder, ErrHeld)
	}
	a.epoch++
	l := Lease{Name: name, Holder: a.node, Epoch: a.epoch, Expires: time.Now().Add(a.ttl)}
	a.leases[name] = l
	return l, nil
}

func (a *memAuthority) Extend(ctx context.Context, l Lease) (Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return Lease{}, errors.New("unreachable")
	}
	cur := a.leases[l.Name]
	if cur.Holder != a.node || cur.Epoch != l.Epoch {
		return Lease{}, ErrLost
	}
	cur.Expires = time.Now().Add(a.ttl)
	a.leases[l.Name] = cur
	return cur, nil
}

func (a *memAuthority) Revoke(ctx context.Context, l Lease, reserveFor string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked = append(a.revoked, l.Name+">"+reserveFor)
	delete(a.leases, l.Name)
	return nil
}

func (a *memAuthority) setDown(v bool) {
	a.mu.Lock()
	a.down = v
	a.mu.Unlock()
}

func TestKeeperStopsWritingWhenRenewalFails(t *testing.T) {
	const ttl = 400 * time.Millisecond
	auth := newMem("me", ttl)
	k := NewKeeper(auth, KeeperConfig{Node: "me", TTL: ttl, AcquireTimeout: 200 * time.Millisecond})
	defer k.Abandon()
	ctx := context.Background()
	epoch, err := k.CheckWrite(ctx, "a.db")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl) // renewals keep it
	if e, err := k.CheckWrite(ctx, "a.db"); err != nil || e != epoch {
		t.Fatalf("after renewals: %d %v", e, err)
	}
	auth.setDown(true)
	cut := time.Now()
	deadline := cut.Add(2 * ttl)
	for {
		_, err := k.CheckWrite(ctx, "a.db")
		if err != nil {
			if !errors.Is(err, ferry.ErrReadOnly) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error = %v, want ErrUnavailable wrapping ErrReadOnly", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kept writing with the authority unreachable")
		}
		time.Sleep(5 * time.Millisecond)
	}
	iv := k.Intervals("a.db")
	if len(iv) != 1 || iv[0].Until.After(cut.Add(ttl)) {
		t.Fatalf("tenure outlived the last possible expiry: %+v (cut %s)", iv, cut)
	}
	auth.setDown(false)
	e2, err := k.CheckWrite(ctx, "a.db")
	if err != nil || e2 <= epoch {
		t.Fatalf("reacquire: %d %v", e2, err)
	}
}

func TestKeeperReleaseAndHandoff(t *testing.T) {
	auth := newMem("me", time.Second)
	var events []Event
	var mu sync.Mutex
	k := NewKeeper(auth, KeeperConfig{Node: "me", TTL: time.Second, Notify: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	ctx := context.Background()
	if _, err := k.CheckWrite(ctx, "a.db"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.CheckWrite(ctx, "b.db"); err != nil {
		t.Fatal(err)
	}
	if err := k.Handoff(ctx, "a.db", "other"); err != nil {
		t.Fatal(err)
	}
	if err := k.Release(ctx, "a.db"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("release of a handed-off lease = %v", err)
	}
	if _, err := k.Renew(ctx, "nope.db"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("renew of unknown lease = %v", err)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := k.CheckWrite(ctx, "c.db"); !errors.Is(err, ErrClosed) || !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("after close = %v", err)
	}
	auth.mu.Lock()
	got := fmt.Sprint(auth.revoked)
	auth.mu.Unlock()
	if got != "[a.db>other b.db>]" {
		t.Fatalf("revoked = %s", got)
	}
	time.Sleep(10 * time.Millisecond) // loss events are delivered asynchronously
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 {
		t.Fatalf("events = %+v", events)
	}
}

func TestKeeperHeldElsewhere(t *testing.T) {
	auth := newMem("me", time.Second)
	auth.leases["a.db"] = Lease{Name: "a.db", Holder: "them", Epoch: 7, Expires: time.Now().Add(time.Hour)}
	k := NewKeeper(auth, KeeperConfig{Node: "me", Allowed: func(name string) error {
		if name == "forbidden.db" {
			return ErrNotCandidate
		}
		return nil
	}})
	defer k.Abandon()
	start := time.Now()
	if _, err := k.CheckWrite(context.Background(), "a.db"); !errors.Is(err, ErrHeld) || !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("held elsewhere = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("a lease held elsewhere should fail at once, not wait")
	}
	if _, err := k.CheckWrite(context.Background(), "forbidden.db"); !errors.Is(err, ErrNotCandidate) || !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("placement = %v", err)
	}
}

func TestPlacement(t *testing.T) {
	p := Placement{
		CandidateRegions: []string{"ams", "ord"},
		Candidates:       []string{"special"},
		Preferred:        []RegionRule{{Pattern: "eu/*", Region: "ams"}, {Pattern: "us-*.db", Region: "ord"}},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if !p.Candidate("x", "ams") || !p.Candidate("special", "syd") || p.Candidate("x", "syd") {
		t.Fatal("candidate rules")
	}
	if r, ok := p.PreferredRegion("eu/t1.db"); !ok || r != "ams" {
		t.Fatal("preferred eu")
	}
	if _, ok := p.PreferredRegion("eu/sub/t1.db"); ok {
		t.Fatal("* must not cross /")
	}
	amsUp := func(r string) bool { return r == "ams" }
	if err := p.Allowed("eu/t1.db", "x", "ord", amsUp); !errors.Is(err, ErrNotCandidate) {
		t.Fatalf("ord node for eu db while ams is up: %v", err)
	}
	if err := p.Allowed("eu/t1.db", "x", "ord", func(string) bool { return false }); err != nil {
		t.Fatalf("ord node for eu db while ams is down: %v", err)
	}
	if err := p.Allowed("eu/t1.db", "x", "syd", nil); !errors.Is(err, ErrNotCandidate) {
		t.Fatalf("non-candidate: %v", err)
	}
	if err := (Placement{Preferred: []RegionRule{{Pattern: "[", Region: "x"}}}).Validate(); err == nil {
		t.Fatal("bad pattern accepted")
	}
	if err := (Placement{Preferred: []RegionRule{{Pattern: "*"}}}).Validate(); err == nil {
		t.Fatal("empty region accepted")
	}
}

func TestStatic(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, err := NewStatic(StaticConfig{Node: "a", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e1, err := p.CheckWrite(ctx, "x.db")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewStatic(StaticConfig{Node: "a", Primary: "a", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if e2, _ := p2.CheckWrite(ctx, "x.db"); e2 <= e1 {
		t.Fatalf("epoch did not grow across restarts: %d then %d", e1, e2)
	}
	r, err := NewStatic(StaticConfig{Node: "b", Primary: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckWrite(ctx, "x.db"); !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("replica write = %v", err)
	}
	if h, _, ok := r.Holder("x.db"); !ok || h != "a" {
		t.Fatalf("holder = %q", h)
	}
	if err := r.Handoff(ctx, "x.db", "zzz"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("handoff to unknown = %v", err)
	}
	if _, err := p.Acquire(ctx, ""); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("empty name = %v", err)
	}
	st, _ := r.Status(ctx)
	if len(st.Members) != 2 || st.Members[0].Role != "primary" {
		t.Fatalf("status = %+v", st)
	}
	// A corrupt epoch file is reported, not ignored.
	if err := os.WriteFile(filepath.Join(dir, staticEpochFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStatic(StaticConfig{Node: "a", Dir: dir}); err == nil {
		t.Fatal("corrupt epoch file accepted")
	}
	if _, err := NewStatic(StaticConfig{}); err == nil {
		t.Fatal("empty node accepted")
	}
}

func TestKeeperDrainsBeforeRelease(t *testing.T) {
	auth := newMem("me", time.Second)
	var k *Keeper
	var drained []string
	fail := false
	k = NewKeeper(auth, KeeperConfig{Node: "me", TTL: time.Second, Drain: func(ctx context.Context, name string) error {
		// The lease still holds while draining, so uploads can pass.
		if _, err := k.CheckWrite(ctx, name); err != nil {
			t.Errorf("lease not valid during drain: %v", err)
		}
		drained = append(drained, name)
		if fail {
			return errors.New("bucket down")
		}
		return nil
	}})
	ctx := context.Background()
	for _, n := range []string{"a.db", "b.db"} {
		if _, err := k.CheckWrite(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	fail = true
	if err := k.Handoff(ctx, "a.db", "other"); err == nil || !strings.Contains(err.Error(), "bucket down") {
		t.Fatalf("handoff with failing drain = %v", err)
	}
	if _, ok := k.HeldLease("a.db"); !ok {
		t.Fatal("failed drain gave up the lease")
	}
	// Shutdown releases even when draining fails.
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(k.Held()) != 0 || fmt.Sprint(drained) != "[a.db a.db b.db]" {
		t.Fatalf("held %v, drained %v", k.Held(), drained)
	}
}

// TestUploadGuard: uploads are allowed only on the node that holds the
// lease, and never before the guard knows the lease manager.
func TestUploadGuard(t *testing.T) {
	ctx := context.Background()
	mgr, err := NewStatic(StaticConfig{Node: "a", Primary: "a"})
	if err != nil {
		t.Fatal(err)
	}
	unbound := NewUploadGuard("a")
	if _, err := unbound.CheckWrite(ctx, "x.db"); !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("before Bind: %v, want ErrReadOnly", err)
	}
	holder, other := NewUploadGuard("a"), NewUploadGuard("b")
	holder.Bind(mgr)
	other.Bind(mgr)
	if _, err := holder.CheckWrite(ctx, "x.db"); err != nil || !holder.Holds("x.db") {
		t.Fatalf("holder: %v, holds %v", err, holder.Holds("x.db"))
	}
	if _, err := other.CheckWrite(ctx, "x.db"); !errors.Is(err, ferry.ErrReadOnly) || other.Holds("x.db") {
		t.Fatalf("other node: %v, holds %v", err, other.Holds("x.db"))
	}
}
