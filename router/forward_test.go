package router

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
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

// TestForwardedRequestsAreAuthenticated: with credentials configured, a
// forwarded write carries them in headers of their own; the holder checks
// them, removes them before the application sees the request, and leaves
// the client's Authorization header as it was. A request that claims to
// be forwarded without them gets 401 and never reaches the application.
func TestForwardedRequestsAreAuthenticated(t *testing.T) {
	const idH, secretH = "X-Test-Cluster", "X-Test-Secret"
	auth := func(c *Config) {
		c.SignForward = func(h http.Header) { h.Set(idH, "c1"); h.Set(secretH, "s3cret") }
		c.VerifyForwarded = func(h http.Header) error {
			if h.Get(idH) != "c1" || h.Get(secretH) != "s3cret" {
				return errors.New("bad credentials")
			}
			return nil
		}
		c.CredentialHeaders = []string{idH, secretH}
	}
	var seen http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		_, _ = w.Write([]byte("ok"))
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)
	leases := leaseTable{"t1.db": "node-a"}
	a := newFixture(t, "node-a", leases, auth, func(c *Config) { c.Target = target })
	as := httptest.NewServer(a.router)
	defer as.Close()
	aURL, _ := url.Parse(as.URL)
	b := newFixture(t, "node-b", leases, auth, func(c *Config) {
		c.Peer = func(string) (*url.URL, bool) { return aURL, true }
	})

	r := request(http.MethodPost, "t1.db")
	r.Header.Set("Authorization", "Bearer the-client's-own")
	w := httptest.NewRecorder()
	b.router.ServeHTTP(w, r)
	if w.Code != http.StatusOK || seen == nil {
		t.Fatalf("forwarded write: code %d, reached the app: %v", w.Code, seen != nil)
	}
	if seen.Get(idH) != "" || seen.Get(secretH) != "" {
		t.Fatalf("the application saw the cluster's credentials: %v", seen)
	}
	if got := seen.Get("Authorization"); got != "Bearer the-client's-own" {
		t.Fatalf("the client's Authorization header reached the app as %q", got)
	}

	seen = nil
	for _, h := range []http.Header{
		{ForwardedHeader: {"node-b"}},
		{ForwardedHeader: {"node-b"}, idH: {"c1"}, secretH: {"wrong"}},
	} {
		r := request(http.MethodPost, "t1.db")
		for k, v := range h {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		a.router.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || seen != nil {
			t.Fatalf("request claiming to be forwarded with %v: code %d, reached the app: %v", h, w.Code, seen != nil)
		}
	}
	// A client's own request that happens to carry the headers never
	// passes them on.
	r = request(http.MethodPost, "t1.db")
	r.Header.Set(secretH, "guess")
	w = httptest.NewRecorder()
	a.router.ServeHTTP(w, r)
	if w.Code != http.StatusOK || seen.Get(secretH) != "" {
		t.Fatalf("client request with a credential header: code %d, app saw %q", w.Code, seen.Get(secretH))
	}
}

// lateLeases learns of database holders only once told.
type lateLeases struct {
	holder string
	known  atomic.Bool
}

func (l *lateLeases) Holder(string) (string, uint64, bool) {
	if !l.known.Load() {
		return "", 0, false
	}
	return l.holder, 1, true
}

// TestReadWaitsToLearnHolder: a client that just wrote a database on
// another node reads it here before this node has heard who holds its
// lease. The read waits to learn the holder and goes there, rather than
// serving a copy this node does not have.
func TestReadWaitsToLearnHolder(t *testing.T) {
	late := &lateLeases{holder: "node-a"}
	p := newPair(t, func(c *Config) {
		c.Leases = late
		c.MaxLag = 5 * time.Second
	})
	go func() {
		time.Sleep(50 * time.Millisecond)
		late.known.Store(true)
	}()
	r := request(http.MethodGet, "t1.db")
	r.Header.Set(HeaderName, formatWritten(written{{"t1.db", 1}}))
	p.b.router.ServeHTTP(httptest.NewRecorder(), r)
	if p.a.hits.Load() != 1 || p.b.hits.Load() != 0 {
		t.Fatalf("holder hits %d, replica hits %d", p.a.hits.Load(), p.b.hits.Load())
	}
}
