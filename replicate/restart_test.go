package replicate

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// Tests of a node that restarts after a crash with uploads unfinished.

// TestRestartedWriterStoresAnnouncedFile: a node dies between the head
// and the L0 object, and comes back under a newer epoch, as a static lease
// does at every start. It is the writer that announced the file, so it
// stores it from its local log at once rather than waiting PendingGrace
// for itself.
func TestRestartedWriterStoresAnnouncedFile(t *testing.T) {
	ctx := context.Background()
	fb, layout, opts, d := diedBeforeObject(t, "restarted.db")

	opts.Guard = &epochGuard{epoch: 2}
	r := New(fb, layout, opts)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatalf("restarted writer under a newer epoch: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v; want %v", pos, err, d.pos)
	}
}

// TestRestartedFormerWriterStoresAnnouncedFile: a holder dies between the
// head and the L0 object and comes back without the lease, which another
// node now holds. It is still the only node with that file, so it stores
// it; otherwise the new holder's uploads wait PendingGrace for it.
func TestRestartedFormerWriterStoresAnnouncedFile(t *testing.T) {
	ctx := context.Background()
	fb, layout, opts, d := diedBeforeObject(t, "former.db")

	guard := &switchGuard{}
	guard.set(ferry.ErrReadOnly)
	opts.Guard = guard
	r := New(fb, layout, opts)
	_ = r.Sync(ctx, d.name)
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore after the former writer came back read-only: %v %v; want %v", pos, err, d.pos)
	}
}

// diedBeforeObject leaves database name of node n1 (epoch 1) as a writer
// killed between the head and the L0 object leaves it: the bucket's head
// announces a file that is only in the local log.
func diedBeforeObject(t *testing.T, name string) (Backend, ferry.Layout, Options, *testDB) {
	t.Helper()
	ctx := context.Background()
	fb, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	fail := &failingBackend{Backend: fb}
	layout := ferry.Layout{Dir: t.TempDir()}
	opts := testOptions()
	opts.Node, opts.Guard = "n1", &epochGuard{epoch: 1}
	d := newTestDB(t, layout, name)
	d.insert(3, 10)
	if err := New(fail, layout, opts).Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(3, 10)
	fail.failLTXPuts.Store(true)
	if err := New(fail, layout, opts).Sync(ctx, d.name); err == nil {
		t.Fatal("want the L0 upload to fail")
	}
	return fb, layout, opts, d
}

// TestCatchUpUploadsBacklog: a node restarts with commits its bucket
// lacks while it does not hold the lease, so its first upload round finds
// it read-only. Once it is granted the lease and catches up, the backlog
// is uploaded without waiting for another commit.
func TestCatchUpUploadsBacklog(t *testing.T) {
	ctx := context.Background()
	guard := &switchGuard{}
	opts := testOptions()
	opts.Guard = guard
	r, layout, _ := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "backlog.db")
	d.insert(3, 10)
	guard.set(nil)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(3, 10)
	guard.set(ferry.ErrReadOnly)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	for i := 0; guard.refusals() == 0; i++ {
		if i == 2000 {
			t.Fatal("the replicator never asked the guard")
		}
		time.Sleep(5 * time.Millisecond)
	}

	guard.set(nil)
	a := newFileApplier(t)
	a.seed(t, d, d.pos.TXID)
	if _, err := r.CatchUp(ctx, d.name, a); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, _ := r.BucketPos(d.name); p == d.pos {
			return
		}
		if time.Now().After(deadline) {
			p, _ := r.BucketPos(d.name)
			t.Fatalf("bucket at %v 10s after the catch-up, want %v", p, d.pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// switchGuard is a WriteGuard that refuses with a settable error and
// counts its refusals.
type switchGuard struct {
	mu      sync.Mutex
	err     error
	refused int
}

func (g *switchGuard) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

func (g *switchGuard) refusals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

func (g *switchGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		g.refused++
		return 0, g.err
	}
	return 1, nil
}
