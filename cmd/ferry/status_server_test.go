package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/status"
)

// statusTestSecretEnv holds the cluster secret of startStatusNode's node.
const statusTestSecretEnv = "FERRY_TEST_STATUS_SECRET"

// startStatusNode runs a single-node Raft lease manager and its status
// endpoint on a Unix socket, with two databases whose positions are given.
// The endpoint requires cluster credentials; it returns the endpoint's
// address and a config file with the cluster section for clients.
func startStatusNode(t *testing.T) (lease.Manager, string, string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(statusTestSecretEnv, "status-test-secret-0123")
	cluster := ClusterConfig{ID: "status-test", SecretEnv: statusTestSecretEnv}
	auth, err := cluster.requireAuth("test", os.LookupEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	clientConfig := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(clientConfig, []byte("cluster:\n  id: status-test\n  secret-env: "+statusTestSecretEnv+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := LeaseConfig{
		Type: "raft", Node: "solo", Region: "ams", TTL: 2 * time.Second,
		Status: StatusConfig{Listen: "unix:status.sock"},
		Raft: RaftLeaseConfig{Bind: "127.0.0.1:0", Advertise: "",
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond},
	}
	// Bind to a free port: the advertise address must be a real one.
	cfg.Raft.Bind = freeLoopbackAddr(t)
	m, err := cfg.open(context.Background(), dir, nil, leaseHooks{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	positions := map[string]ferry.Pos{
		"a.db":         {TXID: 12, PostApplyChecksum: 0xabc},
		"eu/tenant.db": {TXID: 3, PostApplyChecksum: 0xdef},
	}
	src := statusSources{
		Lease:     m,
		Databases: func() []string { return []string{"a.db", "eu/tenant.db"} },
		LocalPos: func(name string) (ferry.Pos, error) {
			return positions[name], nil
		},
		BucketPos: func(name string) (ferry.Pos, bool) {
			if name == "a.db" {
				return ferry.Pos{TXID: 10, PostApplyChecksum: 0x123}, true
			}
			return ferry.Pos{}, false
		},
		Faults: func() []ferry.Fault {
			return []ferry.Fault{{Name: "eu/tenant.db", State: ferry.FaultReadOnly, Reason: "disk full"}}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stop, err := serveStatus(ctx, cfg, dir, auth.Handler(status.NewHandler(src)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := m.CheckWrite(wctx, "a.db"); err != nil {
		t.Fatal(err)
	}
	return m, "unix:" + filepath.Join(dir, "status.sock"), clientConfig
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

func TestStatusCommand(t *testing.T) {
	_, addr, conf := startStatusNode(t)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"status", "-addr", addr, "-config", conf}, &out, &errOut); err != nil {
		t.Fatalf("status: %v (%s)", err, errOut.String())
	}
	table := out.String()
	t.Logf("ferry status:\n%s", table)
	for _, want := range []string{
		"node solo (region ams), leases: raft, leader solo, term ",
		"MEMBER", "leader", "DATABASE", "a.db", "solo",
		ferry.Pos{TXID: 12, PostApplyChecksum: 0xabc}.String(),
		ferry.Pos{TXID: 10, PostApplyChecksum: 0x123}.String(),
		"eu/tenant.db",
		"STATE", "read-only", "disk full",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q", want)
		}
	}

	out.Reset()
	if err := run(context.Background(), []string{"status", "-addr", addr, "-config", conf, "-json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var rep statusReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out.String())
	}
	if rep.Leader != "solo" || rep.Term == 0 || len(rep.Databases) != 2 {
		t.Fatalf("report = %+v", rep)
	}
	a := rep.Databases[0]
	if a.Name != "a.db" || a.Holder != "solo" || a.Epoch == 0 || a.Expires == nil || a.Lag == nil || *a.Lag != 2 {
		t.Fatalf("a.db = %+v", a)
	}
	if eu := rep.Databases[1]; eu.Holder != "" || eu.Local == nil || eu.Bucket != nil || eu.Lag == nil || *eu.Lag != 3 ||
		eu.State != ferry.FaultReadOnly || eu.Reason != "disk full" {
		t.Fatalf("eu/tenant.db = %+v", eu)
	}
}

func TestHandoffCommandErrors(t *testing.T) {
	_, addr, conf := startStatusNode(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"handoff", "-addr", addr, "-config", conf, "a.db", "ghost"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `node "ghost" is not a cluster member`) {
		t.Fatalf("handoff to unknown node: %v", err)
	}
	err = run(ctx, []string{"handoff", "-addr", addr, "-config", conf, "nobody-holds.db", "solo"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "nobody holds it") {
		t.Fatalf("handoff of unheld db: %v", err)
	}
	if err := run(ctx, []string{"handoff", "-addr", addr, "-config", conf, "../x", "solo"}, &out, &errOut); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("handoff of bad name: %v", err)
	}
	if err := run(ctx, []string{"handoff", "-addr", addr, "-config", conf, "a.db"}, &out, &errOut); err == nil {
		t.Fatal("handoff with one argument accepted")
	}
	// Handing a lease to its holder is a no-op that succeeds.
	out.Reset()
	if err := run(ctx, []string{"handoff", "-addr", addr, "-config", conf, "a.db", "solo"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "handed a.db off to solo") {
		t.Fatalf("output %q", out.String())
	}
	// Nothing listening: a clear error, not a hang.
	dead := "unix:" + filepath.Join(t.TempDir(), "none.sock")
	if err := run(ctx, []string{"status", "-addr", dead}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "is `ferry mount` running?") {
		t.Fatalf("status without a node: %v", err)
	}
	if err := run(ctx, []string{"status", "-addr", "192.0.2.1:1"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("status to a remote address: %v", err)
	}
}

func TestStatusEndpointRejectsGarbage(t *testing.T) {
	m, err := lease.NewStatic(lease.StaticConfig{Node: "a"})
	if err != nil {
		t.Fatal(err)
	}
	h := status.NewHandler(statusSources{Lease: m})
	for _, body := range []string{"", "{", "\x00\xff", `{"database":"a.db","node":"b","extra":1}`, `{"database":"","node":"b"}`, `{"database":"a.db","node":""}`, strings.Repeat("x", 100000)} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/handoff", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("body %.20q: status %d", body, rec.Code)
		}
		var e statusError
		if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("body %.20q: no error message: %s", body, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/handoff", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET handoff: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("static status: %d %s", rec.Code, rec.Body.String())
	}
}

func TestPrintStatusEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := printStatus(&b, statusReport{Node: "x", Type: "raft"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "leader none") || !strings.Contains(b.String(), "(no databases)") {
		t.Fatalf("output:\n%s", b.String())
	}
}
