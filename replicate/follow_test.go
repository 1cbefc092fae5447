package replicate

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func TestFollowAppliesOnlyWhatIsNew(t *testing.T) {
	ctx := context.Background()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "f/x.db")
	for i := 0; i < 5; i++ {
		d.insert(3, 300)
		r.Committed(d.name, d.pos)
		r.tick(ctx)
	}

	a := newFileApplier(t)
	a.seed(t, d, 2)
	pos, applied, err := r.Follow(ctx, d.name, a)
	if err != nil || !applied || pos != d.pos {
		t.Fatalf("follow behind: pos %v applied %v err %v, want %v", pos, applied, err, d.pos)
	}
	mustEqualFile(t, a.path(d.name), d.prev)

	// Current: one GET of the head and no listing.
	before := r.Stats()
	if _, applied, err := r.Follow(ctx, d.name, a); err != nil || applied {
		t.Fatalf("follow when current: applied %v err %v", applied, err)
	}
	after := r.Stats()
	if after.Gets-before.Gets != 1 || after.Lists != before.Lists {
		t.Fatalf("follow when current cost %d GETs and %d LISTs, want 1 and 0",
			after.Gets-before.Gets, after.Lists-before.Lists)
	}

	// A database the bucket has never seen is left alone.
	if _, applied, err := r.Follow(ctx, "f/none.db", a); err != nil || applied {
		t.Fatalf("follow unknown database: applied %v err %v", applied, err)
	}
}

func TestFollowerSkipsWrittenDatabases(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "w.db")
	d.insert(2, 100)
	r.Committed(d.name, d.pos)
	r.tick(ctx)

	a := newFileApplier(t)
	var asked atomic.Int64
	f := &Follower{
		Replicator: r, Applier: a,
		Databases: func() []string { return []string{d.name} },
		Writer: func(string) bool {
			if asked.Add(1) >= 3 {
				cancel()
			}
			return true
		},
		Interval: time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	f.Run(ctx)
	if pos, _ := a.LocalPos(d.name); !pos.IsZero() {
		t.Fatalf("follower applied %v to a database this node writes", pos)
	}
}
