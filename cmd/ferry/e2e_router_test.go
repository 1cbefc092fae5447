package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"github.com/ferrydb/ferry/internal/peerauth"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/flyproxy"
	"github.com/ferrydb/ferry/router"
)

// counterApp is a per-tenant counter app on one node: it keeps tenant T in
// T.db under the node's mount, and says which node served each request.
type counterApp struct {
	node string
	mnt  atomic.Pointer[string]
	hits atomic.Int64
	srv  *httptest.Server
}

func startCounterApp(t *testing.T, node, ip string) *counterApp {
	t.Helper()
	a := &counterApp{node: node}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /t/{tenant}/inc", func(w http.ResponseWriter, r *http.Request) {
		a.sql(w, r.PathValue("tenant"), "CREATE TABLE IF NOT EXISTS c(n); INSERT INTO c VALUES (1); SELECT count(*) FROM c;")
	})
	mux.HandleFunc("GET /t/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		a.sql(w, r.PathValue("tenant"), "SELECT count(*) FROM c;")
	})
	mux.HandleFunc("POST /big/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		a.sql(w, r.PathValue("tenant"), fmt.Sprintf("CREATE TABLE IF NOT EXISTS c(n); INSERT INTO c VALUES (%d); SELECT sum(n) FROM c;", n))
	})
	mux.HandleFunc("POST /hit", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		w.Header().Set("X-Served-By", a.node)
	})
	// A WebSocket handshake, then every line the client sends comes back
	// with the node's name: enough to see the upgrade pass both proxies.
	mux.HandleFunc("GET /ws/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want a websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Served-By: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")), a.node)
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(brw, "%s says %s", a.node, line)
			brw.Flush()
		}
	})
	a.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func (a *counterApp) sql(w http.ResponseWriter, tenant, sql string) {
	a.hits.Add(1)
	w.Header().Set("X-Served-By", a.node)
	mnt := a.mnt.Load()
	if mnt == nil {
		http.Error(w, "not mounted yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sqlite3", "-cmd", ".timeout 5000", filepath.Join(*mnt, tenant+".db"), sql).CombinedOutput()
	if err != nil {
		http.Error(w, string(out), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, strings.TrimSpace(string(out)))
}

// routerCluster is two Raft nodes, each with the proxy in front of a
// counter app, and the Fly proxy emulator in front of both.
type routerCluster struct {
	*raftCluster
	apps    []*counterApp
	proxies []string // each node's proxy address
	metrics []string // each node's metrics address
	fly     *flyproxy.Proxy
	flyURL  string
}

func startRouterCluster(t *testing.T) *routerCluster {
	t.Helper()
	ips := []string{"127.0.0.41", "127.0.0.42"}
	rc := &routerCluster{}
	var raftAddrs, peers []string
	for i, ip := range ips {
		rc.apps = append(rc.apps, startCounterApp(t, fmt.Sprintf("node%d", i+1), ip))
		rc.proxies = append(rc.proxies, freeAddr(t, ip))
		rc.metrics = append(rc.metrics, freeAddr(t, ip))
		raftAddrs = append(raftAddrs, freeAddr(t, ip))
		peers = append(peers, fmt.Sprintf("    node%d: %q\n", i+1, rc.proxies[i]))
	}
	// Both nodes act as on Fly.io (replay); a request that did not come
	// through the emulator is forwarded instead.
	rc.raftCluster = startRaftClusterAt(t, raftAddrs, raftAddrs, "2s", func(i int) (string, string) {
		return fmt.Sprintf(`proxy:
  addr: %q
  target: %q
  mode: replay
  routes:
    - {path: "/t/{tenant}", db: "{tenant}.db"}
    - {path: "/big/{tenant}", db: "{tenant}.db"}
    - {path: "/ws/{tenant}", db: "{tenant}.db"}
    - {host: "{tenant}.example.test", db: "{tenant}.db"}
  db-header: X-Tenant-DB
  writes: ["GET /ws/"]
  holder-wait: 1s
  health-path: /health
  peers:
%smetrics:
  addr: %q
`, rc.proxies[i], rc.apps[i].srv.Listener.Addr().String(), strings.Join(peers, ""), rc.metrics[i]),
			"  upload-interval: 100ms\n  follow-interval: 100ms\n"
	})
	for i, n := range rc.nodes {
		rc.apps[i].mnt.Store(&n.Dir)
	}
	fly, err := flyproxy.New(map[string]string{"node1": "http://" + rc.proxies[0], "node2": "http://" + rc.proxies[1]})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.43:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: fly}}
	srv.Start()
	t.Cleanup(srv.Close)
	rc.fly, rc.flyURL = fly, srv.URL
	return rc
}

type routerReply struct {
	code   int
	body   string
	by     string
	header http.Header
}

// do sends a request with the client; instance, if set, is the emulator's
// first instance.
func (rc *routerCluster) do(t *testing.T, c *http.Client, method, url, instance string, body io.Reader, hdr ...string) routerReply {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if instance != "" {
		req.Header.Set(flyproxy.ForceInstanceHeader, instance)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return routerReply{resp.StatusCode, strings.TrimSpace(string(b)), resp.Header.Get("X-Served-By"), resp.Header}
}

func (rc *routerCluster) dump() string {
	var s string
	for i, n := range rc.nodes {
		s += fmt.Sprintf("node%d:\n%s\n", i+1, n.output)
	}
	return s
}

// TestE2ERouter drives a two-node cluster through the proxy, directly and
// through the Fly proxy emulator, with a real HTTP client.
func TestE2ERouter(t *testing.T) {
	rc := startRouterCluster(t)
	p1, p2 := "http://"+rc.proxies[0], "http://"+rc.proxies[1]
	plain := &http.Client{Timeout: 30 * time.Second}

	// The first write takes the lease on the node it lands on.
	if r := rc.do(t, plain, "POST", p1+"/t/acme/inc", "", nil); r.code != 200 || r.by != "node1" || r.body != "1" {
		t.Fatalf("first write: %+v\n%s", r, rc.dump())
	}

	t.Run("write on replica is forwarded", func(t *testing.T) {
		r := rc.do(t, plain, "POST", p2+"/t/acme/inc", "", nil)
		if r.code != 200 || r.by != "node1" || r.body != "2" {
			t.Fatalf("%+v", r)
		}
	})

	t.Run("write on replica is replayed under the emulator", func(t *testing.T) {
		before := rc.fly.Replays.Load()
		r := rc.do(t, plain, "POST", rc.flyURL+"/t/acme/inc", "node2", nil)
		if r.code != 200 || r.by != "node1" || r.body != "3" || rc.fly.Replays.Load() != before+1 {
			t.Fatalf("%+v, replays %d -> %d", r, before, rc.fly.Replays.Load())
		}
	})

	t.Run("large body is forwarded, not replayed", func(t *testing.T) {
		before := rc.fly.Replays.Load()
		big := strings.Repeat("x", 2<<20)
		r := rc.do(t, plain, "POST", rc.flyURL+"/big/acme", "node2", strings.NewReader(big))
		if r.code != 200 || r.by != "node1" || rc.fly.Replays.Load() != before {
			t.Fatalf("code %d by %q body %.200q, replays %d -> %d", r.code, r.by, r.body, before, rc.fly.Replays.Load())
		}
	})

	t.Run("a loop is cut", func(t *testing.T) {
		hits := rc.apps[1].hits.Load() + rc.apps[0].hits.Load()
		r := rc.do(t, plain, "POST", p2+"/t/acme/inc", "", nil, router.ForwardedHeader, "node1",
			peerauth.HeaderClusterID, "ferry-e2e", peerauth.HeaderSecret, os.Getenv(e2eSecretEnv))
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("%+v", r)
		}
		if rc.apps[1].hits.Load()+rc.apps[0].hits.Load() != hits {
			t.Fatal("a looping write reached an app")
		}
	})

	t.Run("only nodes may forward", func(t *testing.T) {
		hits := rc.apps[1].hits.Load() + rc.apps[0].hits.Load()
		r := rc.do(t, plain, "POST", p2+"/t/acme/inc", "", nil, router.ForwardedHeader, "node1",
			peerauth.HeaderClusterID, "ferry-e2e", peerauth.HeaderSecret, "not-the-secret")
		if r.code != http.StatusUnauthorized {
			t.Fatalf("a request claiming to be forwarded, with a wrong secret: %+v", r)
		}
		if rc.apps[1].hits.Load()+rc.apps[0].hits.Load() != hits {
			t.Fatal("an unauthenticated forwarded request reached an app")
		}
	})

	t.Run("routes by path, host and header", func(t *testing.T) {
		if r := rc.do(t, plain, "POST", p1+"/t/globex/inc", "", nil); r.code != 200 || r.by != "node1" {
			t.Fatalf("path: %+v", r)
		}
		// /hit matches no path route: the host or the header names
		// globex.db, so the write reaches node1, its holder.
		for _, hdr := range [][]string{
			{"Host", "globex.example.test"},
			{"Host", "GLOBEX.example.test:8080"},
			{"X-Tenant-DB", "globex.db"},
		} {
			if r := rc.do(t, plain, "POST", p2+"/hit", "", nil, hdr...); r.code != 200 || r.by != "node1" {
				t.Fatalf("%v: %+v", hdr, r)
			}
		}
		// Path patterns come first: the path's tenant wins over the header's.
		if r := rc.do(t, plain, "POST", p2+"/t/newco/inc", "", nil, "X-Tenant-DB", "globex.db"); r.code != 200 || r.by != "node2" {
			t.Fatalf("path over header: %+v", r)
		}
		// Unrouted: served by the node it lands on.
		if r := rc.do(t, plain, "POST", p2+"/hit", "", nil); r.code != 200 || r.by != "node2" {
			t.Fatalf("unrouted: %+v", r)
		}
	})

	t.Run("hostile tenant names get 400", func(t *testing.T) {
		hits := rc.apps[1].hits.Load()
		for _, tc := range []struct{ path, hdr, val string }{
			{"/t/..%2F..%2Fetc%2Fpasswd/inc", "", ""},
			{"/t/%2E%2E/inc", "", ""},
			{"/t/.ferry/inc", "", ""},
			{"/", "X-Tenant-DB", "../etc/x.db"},
			{"/", "X-Tenant-DB", "/abs.db"},
		} {
			var hdr []string
			if tc.hdr != "" {
				hdr = []string{tc.hdr, tc.val}
			}
			if r := rc.do(t, plain, "POST", p2+tc.path, "", nil, hdr...); r.code != http.StatusBadRequest {
				t.Errorf("%s %s=%s: %+v", tc.path, tc.hdr, tc.val, r)
			}
		}
		if rc.apps[1].hits.Load() != hits {
			t.Fatal("a hostile name reached the app")
		}
	})

	t.Run("read-your-writes across two databases", func(t *testing.T) {
		// Both databases exist on node2 before the client writes: it then
		// waits for node2 to catch up rather than going to the holder.
		for _, tenant := range []string{"ryw-a", "ryw-b"} {
			if r := rc.do(t, plain, "POST", p1+"/t/"+tenant+"/inc", "", nil); r.code != 200 {
				t.Fatalf("%+v", r)
			}
			rc.waitFor(tenant+" on node2", func() bool {
				r := rc.do(t, plain, "GET", p2+"/t/"+tenant, "", nil)
				return r.code == 200 && r.body == "1"
			})
		}
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		a := rc.do(t, c, "POST", rc.flyURL+"/t/ryw-a/inc", "node1", nil)
		b := rc.do(t, c, "POST", rc.flyURL+"/t/ryw-b/inc", "node1", nil)
		a2 := rc.do(t, c, "POST", rc.flyURL+"/t/ryw-a/inc", "node2", nil)
		if a.code != 200 || b.code != 200 || a2.body != "3" {
			t.Fatalf("writes: %+v %+v %+v", a, b, a2)
		}
		// Both databases' positions ride in the cookie: reads on the
		// replica see both writes, not only the last one.
		for _, tc := range []struct{ tenant, want string }{{"ryw-a", "3"}, {"ryw-b", "2"}} {
			r := rc.do(t, c, "GET", rc.flyURL+"/t/"+tc.tenant, "node2", nil)
			if r.code != 200 || r.body != tc.want || r.by != "node2" {
				t.Fatalf("read %s: %+v, want %s from node2", tc.tenant, r, tc.want)
			}
		}
		// A database this node does not have is read on the holder.
		fresh := rc.do(t, c, "POST", rc.flyURL+"/t/ryw-c/inc", "node1", nil)
		if r := rc.do(t, c, "GET", rc.flyURL+"/t/ryw-c", "node2", nil); fresh.code != 200 || r.code != 200 || r.body != "1" || r.by != "node1" {
			t.Fatalf("read of a database node2 lacks: %+v", r)
		}
	})

	t.Run("websocket passes through forward and replay", func(t *testing.T) {
		for _, base := range []string{rc.proxies[1], strings.TrimPrefix(rc.flyURL, "http://")} {
			got := wsEcho(t, base, "/ws/acme", "node2", "hello")
			if got != "node1 says hello" {
				t.Fatalf("via %s: %q", base, got)
			}
		}
	})

	t.Run("metrics and health", func(t *testing.T) {
		testRouterMetrics(t, rc)
	})

	t.Run("no holder: 503 with Retry-After", func(t *testing.T) {
		// With node1 gone, node2 alone has no Raft quorum: nobody can take
		// a new database's lease.
		if err := rc.nodes[0].kill(); err != nil {
			t.Fatal(err)
		}
		r := rc.do(t, plain, "POST", p2+"/t/fresh/inc", "", nil)
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("%+v", r)
		}
	})
}

// wsEcho opens a WebSocket on addr (forcing the emulator's first instance
// to instance), sends one line and returns the reply line.
func wsEcho(t *testing.T, addr, path, instance, msg string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s: %s\r\n\r\n",
		path, addr, key, flyproxy.ForceInstanceHeader, instance)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("handshake: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	fmt.Fprintf(conn, "%s\n", msg)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}
