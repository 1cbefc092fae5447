package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/lease"
)

func TestProxyConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  ProxyConfig
		want string
	}{
		{ProxyConfig{}, ""},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db"}, ""},
		{ProxyConfig{Addr: ":0", Target: "x:1", DBHeader: "X-DB"}, ""},
		{ProxyConfig{Addr: ":0", DB: "a.db"}, "target"},
		{ProxyConfig{Addr: ":0", Target: "x:1"}, "db or db-header"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db", DBHeader: "X"}, "not both"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "../a.db"}, "invalid name"},
		{ProxyConfig{Addr: ":0", Target: "x:1", Routes: []ProxyRoute{{Path: "/c/{tenant}", DB: "{tenant}.db"}}}, ""},
		{ProxyConfig{Addr: ":0", Target: "x:1", Routes: []ProxyRoute{{Path: "/c/{tenant}", DB: "../{tenant}.db"}}}, "proxy.routes: route 1"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db", Mode: "teleport"}, "proxy.mode"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db", ReadBehind: "guess"}, "proxy.read-behind"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db", Reads: []string{"POST"}}, "METHOD /path"},
		{ProxyConfig{Addr: ":0", Target: "x:1", DB: "a.db", Peers: map[string]string{"n1": "nohost"}}, "proxy.peers.n1"},
	} {
		err := tc.cfg.validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestE2EProxyServesThroughMount runs `ferry mount` with the proxy in front
// of an app that writes through the mount: a write on the lease holder is
// served locally and answered with the position cookie.
func TestE2EProxyServesThroughMount(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db := r.Header.Get("X-Tenant-DB")
		if r.Method == http.MethodPost {
			if out, err := exec.Command("sqlite3", os.Getenv("FERRY_TEST_MNT")+"/"+db,
				"CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1)").CombinedOutput(); err != nil {
				http.Error(w, string(out), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, "ok")
	}))
	defer app.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := ln.Addr().String()
	ln.Close()

	m := startMountWith(t, fmt.Sprintf("proxy:\n  addr: %q\n  target: %q\n  db-header: X-Tenant-DB\n",
		proxyAddr, strings.TrimPrefix(app.URL, "http://")))
	t.Setenv("FERRY_TEST_MNT", m.Dir)

	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+proxyAddr+"/", nil)
		req.Header.Set("X-Tenant-DB", "tenant-7.db")
		resp, err = http.DefaultClient.Do(req)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy: %v\n%s", err, m.output)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte("ok")) {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if resp.Header.Get("fly-replay") != "" {
		t.Fatal("the holder replayed its own write")
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "__ferry_txid" {
			cookie = c.Value
		}
	}
	if !strings.HasPrefix(cookie, "tenant-7.db:") {
		t.Fatalf("position cookie = %q", cookie)
	}
}

// statusOnly is a lease manager that only reports a status.
type statusOnly struct {
	lease.Manager
	st lease.Status
}

func (s statusOnly) Status(context.Context) (lease.Status, error) { return s.st, nil }

func TestProxyPeerAddresses(t *testing.T) {
	mgr := statusOnly{st: lease.Status{Members: []lease.Member{
		{ID: "n1", Address: "10.0.0.1:20202"},
		{ID: "n2", Address: "[fdaa::2]:20202"},
	}}}
	c := ProxyConfig{Addr: ":8080", Peers: map[string]string{"n1": "proxy-1:9000"}}
	t.Setenv("FLY_APP_NAME", "")
	peer := c.peerFunc(mgr)
	for node, want := range map[string]string{"n1": "http://proxy-1:9000", "n2": "http://[fdaa::2]:8080", "n3": ""} {
		got := ""
		if u, ok := peer(node); ok {
			got = u.String()
		}
		if got != want {
			t.Errorf("%s: %q, want %q", node, got, want)
		}
	}
	t.Setenv("FLY_APP_NAME", "myapp")
	if u, ok := peer("n2"); !ok || u.String() != "http://n2.vm.myapp.internal:8080" {
		t.Errorf("on Fly: %v %v", u, ok)
	}
}
