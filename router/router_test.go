package router

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// leaseTable is a fixed lease view.
type leaseTable map[string]string

func (t leaseTable) Holder(name string) (string, uint64, bool) {
	h, ok := t[name]
	return h, 1, ok
}

// positions is a position table the test advances.
type positions struct {
	mu  sync.Mutex
	pos map[string]ferry.Pos
}

func (p *positions) LocalPos(name string) (ferry.Pos, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos[name], nil
}

func (p *positions) set(name string, txid ltx.TXID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pos[name] = ferry.Pos{TXID: txid, PostApplyChecksum: ltx.Checksum(1<<63 | uint64(txid))}
}

type fixture struct {
	router *Router
	hits   atomic.Int64
	pos    *positions
	// seenTXID is the local position when the app handled the last request.
	seenTXID atomic.Uint64
}

func newFixture(t *testing.T, node string, leases leaseTable, opts ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{pos: &positions{pos: map[string]ferry.Pos{}}}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		p, _ := f.pos.LocalPos("t1.db")
		f.seenTXID.Store(uint64(p.TXID))
		if IsWrite(r) {
			f.pos.set("t1.db", p.TXID+1)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(app.Close)
	target, _ := url.Parse(app.URL)
	cfg := Config{
		Target:    target,
		NodeID:    node,
		Database:  (&Resolver{Header: "X-Ferry-DB"}).Resolve,
		Leases:    leases,
		Positions: f.pos,
		MaxLag:    2 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.router = rt
	return f
}

func request(method, db string) *http.Request {
	r := httptest.NewRequest(method, "/items", strings.NewReader("x"))
	if db != "" {
		r.Header.Set("X-Ferry-DB", db)
	}
	return r
}

func TestWriteOnReplicaIsReplayedOnHolder(t *testing.T) {
	f := newFixture(t, "node-b", leaseTable{"t1.db": "node-a"}, replayMode)
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, viaFly(request(http.MethodPost, "t1.db")))
	if got := w.Header().Get("fly-replay"); got != "instance=node-a" {
		t.Fatalf("fly-replay = %q, want instance=node-a", got)
	}
	if f.hits.Load() != 0 {
		t.Fatal("a write for another node's database reached the local app")
	}
}

func TestReadOnReplicaIsServedLocally(t *testing.T) {
	f := newFixture(t, "node-b", leaseTable{"t1.db": "node-a"})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodGet, "t1.db"))
	if w.Header().Get("fly-replay") != "" || f.hits.Load() != 1 {
		t.Fatalf("read not served locally: replay=%q hits=%d", w.Header().Get("fly-replay"), f.hits.Load())
	}
}

func TestWriteOnHolderSetsPositionCookie(t *testing.T) {
	f := newFixture(t, "node-a", leaseTable{"t1.db": "node-a"})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodPost, "t1.db"))
	if f.hits.Load() != 1 {
		t.Fatal("write not served by the holder")
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName {
		t.Fatalf("cookies = %v", cookies)
	}
	// The header went out after the app's commit, so the cookie must name
	// the position the write produced.
	if txid, ok := parseWritten(cookies[0].Value).get("t1.db"); !ok || txid != 1 {
		t.Fatalf("cookie %q: txid=%d ok=%v, want 1", cookies[0].Value, txid, ok)
	}
}

func TestWriteWithNoHolderIsServedLocally(t *testing.T) {
	f := newFixture(t, "node-b", leaseTable{})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodPut, "t1.db"))
	if f.hits.Load() != 1 || w.Header().Get("fly-replay") != "" {
		t.Fatal("first write to an unleased database was not served locally")
	}
}

func TestReadWaitsForWrittenPosition(t *testing.T) {
	f := newFixture(t, "node-b", leaseTable{"t1.db": "node-a"})
	f.pos.set("t1.db", 3)
	r := request(http.MethodGet, "t1.db")
	r.AddCookie(&http.Cookie{Name: CookieName, Value: formatWritten(written{{"t1.db", 5}})})
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.pos.set("t1.db", 5)
	}()
	f.router.ServeHTTP(httptest.NewRecorder(), r)
	if got := f.seenTXID.Load(); got < 5 {
		t.Fatalf("read served at TXID %d before reaching the cookie's TXID 5", got)
	}
}

func TestForeignOrMalformedCookieIsIgnored(t *testing.T) {
	for _, v := range []string{"garbage", "t2.db:ff", "t1.db:zz", ":", "%zz:1", "", "!!", "t1.db"} {
		if txid, ok := parseWritten(v).get("t1.db"); ok {
			t.Fatalf("cookie %q parsed as TXID %d for t1.db", v, txid)
		}
	}
	w := written{{"a b/c;d!:.db", 0x1f}, {"x.db", 2}}
	got := parseWritten(formatWritten(w))
	if txid, ok := got.get("a b/c;d!:.db"); !ok || txid != 0x1f {
		t.Fatalf("round trip: txid=%x ok=%v", txid, ok)
	}
	if txid, ok := got.get("x.db"); !ok || txid != 2 {
		t.Fatalf("round trip: txid=%x ok=%v", txid, ok)
	}
}

func TestInvalidDatabaseHeaderIsRefused(t *testing.T) {
	f := newFixture(t, "node-b", leaseTable{"../t1.db": "node-a"})
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, request(http.MethodPost, "../t1.db"))
	if w.Code != http.StatusBadRequest || f.hits.Load() != 0 {
		t.Fatalf("a name with .. got %d and reached the app %d times", w.Code, f.hits.Load())
	}
}

func TestNewRequiresTarget(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a target succeeded")
	}
}

func replayMode(c *Config) { c.Mode = ModeReplay }

// viaFly marks r as delivered by Fly's proxy.
func viaFly(r *http.Request) *http.Request {
	r.Header.Set(FlyForwardedPortHeader, "443")
	return r
}
