package router

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// pair is a holder node-a and a replica node-b whose router can forward
// to node-a's.
type pair struct {
	a, b   *fixture
	aURL   *url.URL
	bServe *httptest.Server
}

func newPair(t *testing.T, opts ...func(*Config)) *pair {
	t.Helper()
	leases := leaseTable{"t1.db": "node-a"}
	p := &pair{a: newFixture(t, "node-a", leases)}
	as := httptest.NewServer(p.a.router)
	t.Cleanup(as.Close)
	p.aURL, _ = url.Parse(as.URL)
	p.b = newFixture(t, "node-b", leases, append([]func(*Config){func(c *Config) {
		c.Peer = func(node string) (*url.URL, bool) { return p.aURL, node == "node-a" }
	}}, opts...)...)
	p.bServe = httptest.NewServer(p.b.router)
	t.Cleanup(p.bServe.Close)
	return p
}

func TestWriteOnReplicaIsForwardedToHolder(t *testing.T) {
	p := newPair(t)
	w := httptest.NewRecorder()
	p.b.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if w.Code != http.StatusOK || p.a.hits.Load() != 1 || p.b.hits.Load() != 0 {
		t.Fatalf("code %d, holder hits %d, replica hits %d", w.Code, p.a.hits.Load(), p.b.hits.Load())
	}
	if txid, ok := parseWritten(w.Header().Get(HeaderName)).get("t1.db"); !ok || txid != 1 {
		t.Fatalf("forwarded write's position header %q", w.Header().Get(HeaderName))
	}
}

func TestLargeBodyIsForwardedNotReplayed(t *testing.T) {
	p := newPair(t, replayMode)
	big := strings.Repeat("x", DefaultMaxReplayBody+1)
	r := httptest.NewRequest(http.MethodPost, "/items", strings.NewReader(big))
	r.Header.Set("X-Ferry-DB", "t1.db")
	viaFly(r)
	w := httptest.NewRecorder()
	p.b.router.ServeHTTP(w, r)
	if w.Header().Get("fly-replay") != "" || p.a.hits.Load() != 1 {
		t.Fatalf("a body over 1 MB: replay %q, holder hits %d", w.Header().Get("fly-replay"), p.a.hits.Load())
	}
	// One already replayed by Fly is not replayed again, and one that did
	// not come through Fly's proxy cannot be.
	r = viaFly(request(http.MethodPost, "t1.db"))
	r.Header.Set(FlyReplaySrcHeader, "instance=node-c")
	w = httptest.NewRecorder()
	p.b.router.ServeHTTP(w, r)
	if w.Header().Get("fly-replay") != "" || p.a.hits.Load() != 2 {
		t.Fatalf("a replayed request: replay %q, holder hits %d", w.Header().Get("fly-replay"), p.a.hits.Load())
	}
	w = httptest.NewRecorder()
	p.b.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if w.Header().Get("fly-replay") != "" || p.a.hits.Load() != 3 {
		t.Fatalf("a request not from Fly: replay %q, holder hits %d", w.Header().Get("fly-replay"), p.a.hits.Load())
	}
}

func TestForwardedWriteIsNotForwardedAgain(t *testing.T) {
	// node-a and node-b each think the other holds the lease.
	a := newFixture(t, "node-a", leaseTable{"t1.db": "node-b"})
	as := httptest.NewServer(a.router)
	defer as.Close()
	aURL, _ := url.Parse(as.URL)
	b := newFixture(t, "node-b", leaseTable{"t1.db": "node-a"}, func(c *Config) {
		c.Peer = func(string) (*url.URL, bool) { return aURL, true }
	})
	w := httptest.NewRecorder()
	b.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("loop: code %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if a.hits.Load()+b.hits.Load() != 0 {
		t.Fatal("a looping write reached an app")
	}
}

func TestWriteWithNoHolderWaitsThen503(t *testing.T) {
	var decisions []Decision
	f := newFixture(t, "node-b", leaseTable{}, func(c *Config) {
		c.HolderWait = 100 * time.Millisecond
		c.Acquire = func(context.Context, string) error { return errors.New("no quorum") }
		c.Observe = func(d Decision) { decisions = append(decisions, d) }
	})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || f.hits.Load() != 0 {
		t.Fatalf("code %d, Retry-After %q, hits %d", w.Code, w.Header().Get("Retry-After"), f.hits.Load())
	}
	if len(decisions) != 2 || decisions[0] != DecisionWaited || decisions[1] != DecisionUnavailable {
		t.Fatalf("decisions %v", decisions)
	}
}

func TestWriteWithNoHolderAcquiresLease(t *testing.T) {
	leases := leaseTable{}
	f := newFixture(t, "node-b", leases, func(c *Config) {
		c.Acquire = func(context.Context, string) error { return nil }
	})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if w.Code != http.StatusOK || f.hits.Load() != 1 {
		t.Fatalf("code %d, hits %d", w.Code, f.hits.Load())
	}
}

func TestBehindReadIsForwardedToHolder(t *testing.T) {
	p := newPair(t, func(c *Config) { c.MaxLag = 20 * time.Millisecond })
	r := request(http.MethodGet, "t1.db")
	r.Header.Set(HeaderName, formatWritten(written{{"other.db", 9}, {"t1.db", 4}}))
	p.b.router.ServeHTTP(httptest.NewRecorder(), r)
	if p.a.hits.Load() != 1 || p.b.hits.Load() != 0 {
		t.Fatalf("holder hits %d, replica hits %d", p.a.hits.Load(), p.b.hits.Load())
	}

	// With ReadBehindServe, the replica serves it anyway.
	q := newPair(t, func(c *Config) { c.MaxLag = 20 * time.Millisecond; c.ReadBehind = ReadBehindServe })
	r = request(http.MethodGet, "t1.db")
	r.Header.Set(HeaderName, formatWritten(written{{"t1.db", 4}}))
	q.b.router.ServeHTTP(httptest.NewRecorder(), r)
	if q.a.hits.Load() != 0 || q.b.hits.Load() != 1 {
		t.Fatalf("serve: holder hits %d, replica hits %d", q.a.hits.Load(), q.b.hits.Load())
	}
}
