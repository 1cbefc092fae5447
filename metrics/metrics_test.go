package metrics

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// node is a fake node whose positions and clock the test sets.
type node struct {
	mu            sync.Mutex
	local, bucket ltx.TXID
	now           time.Time
}

func (n *node) sources() Sources {
	return Sources{
		Node:      "n1",
		Databases: func() []string { return []string{"a.db"} },
		LocalPos: func(string) (ferry.Pos, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			return ferry.Pos{TXID: n.local, PostApplyChecksum: 1}, nil
		},
		Bucket: func() BucketStats {
			n.mu.Lock()
			defer n.mu.Unlock()
			return BucketStats{Databases: map[string]DBStats{"a.db": {BucketPos: ferry.Pos{TXID: n.bucket, PostApplyChecksum: 1}}}}
		},
		Now: func() time.Time {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.now
		},
	}
}

func (n *node) set(local, bucket ltx.TXID, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.local, n.bucket, n.now = local, bucket, now
}

func TestHealthTurnsLaggingAfterMaxLag(t *testing.T) {
	n := &node{}
	t0 := time.Unix(1000, 0)
	m := New(n.sources())
	h := m.HealthHandler(10 * time.Second)
	code := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health", nil))
		return w.Code
	}

	n.set(5, 5, t0)
	if c := code(); c != http.StatusOK {
		t.Fatalf("caught up: %d", c)
	}
	n.set(5, 8, t0.Add(time.Second)) // behind from here
	if c := code(); c != http.StatusOK {
		t.Fatalf("just behind: %d", c)
	}
	n.set(5, 8, t0.Add(12*time.Second))
	if c := code(); c != http.StatusServiceUnavailable {
		t.Fatalf("behind for 11s: %d", c)
	}
	rep := m.Health(10 * time.Second)
	if len(rep.Lagging) != 1 || rep.Lagging[0].LagTXIDs != 3 || rep.Lagging[0].LagSeconds != 11 {
		t.Fatalf("report %+v", rep)
	}
	n.set(8, 8, t0.Add(13*time.Second))
	if c := code(); c != http.StatusOK {
		t.Fatalf("caught up again: %d", c)
	}
	// A writer ahead of the bucket is not lagging.
	n.set(20, 8, t0.Add(60*time.Second))
	m.Sample()
	n.set(20, 8, t0.Add(90*time.Second))
	if c := code(); c != http.StatusOK {
		t.Fatalf("ahead of the bucket: %d", c)
	}
}

func TestLeaseAcquisitionsCountNewEpochs(t *testing.T) {
	m := New(Sources{Node: "n1"})
	for _, ev := range []struct {
		holder string
		epoch  uint64
	}{{"n1", 1}, {"n1", 1}, {"n2", 2}, {"n1", 3}, {"n1", 3}} {
		m.LeaseChanged("a.db", ev.holder, ev.epoch)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "ferry_lease_acquisitions_total" {
			if v := f.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("acquisitions = %v, want 2", v)
			}
			return
		}
	}
	t.Fatal("no ferry_lease_acquisitions_total")
}

func BenchmarkCountFUSEOp(b *testing.B) {
	m := New(Sources{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CountFUSEOp("read")
		}
	})
}
