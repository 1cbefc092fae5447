package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatusAndHandoffRequireClusterSecret asks a node whose endpoint
// requires cluster credentials without them, with a wrong secret and
// with another cluster's ID: every request is refused with 401 and
// nothing of the node's state, and no lease moves.
func TestStatusAndHandoffRequireClusterSecret(t *testing.T) {
	m, addr, _ := startStatusNode(t)
	dir := t.TempDir()
	writeConf := func(name, id, env string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("cluster:\n  id: "+id+"\n  secret-env: "+env+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("FERRY_TEST_WRONG_SECRET", "not-the-secret-0123456")
	wrongSecret := writeConf("wrong.yml", "status-test", "FERRY_TEST_WRONG_SECRET")
	otherCluster := writeConf("other.yml", "another-cluster", statusTestSecretEnv)

	ctx := context.Background()
	for _, tc := range []struct {
		name, reason string
		flags        []string
	}{
		{"no credentials", "no cluster credentials", nil},
		{"wrong secret", "wrong cluster secret", []string{"-config", wrongSecret}},
		{"other cluster", "wrong cluster ID", []string{"-config", otherCluster}},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"status", "-addr", addr, "-json"}, tc.flags...)
		err := run(ctx, args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "unauthorized: "+tc.reason) || strings.Contains(out.String(), "a.db") {
			t.Errorf("status, %s: err %v, output %q; want a refusal for %q and no report", tc.name, err, out.String(), tc.reason)
		}
		args = append([]string{"handoff", "-addr", addr}, tc.flags...)
		err = run(ctx, append(args, "a.db", "ghost"), &out, &errOut)
		// Served, this handoff would fail with "not a cluster member".
		if err == nil || !strings.Contains(err.Error(), "unauthorized: "+tc.reason) {
			t.Errorf("handoff, %s: err %v; want a refusal for %q", tc.name, err, tc.reason)
		}
	}
	if h, _, ok := m.Holder("a.db"); !ok || h != "solo" {
		t.Fatalf("a.db's lease moved to %q (%v) on refused requests", h, ok)
	}

	// On the wire: 401, and a body that tells nothing of the node.
	sock := strings.TrimPrefix(addr, "unix:")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://ferry/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "a.db") || strings.Contains(string(body), "solo") {
		t.Fatalf("GET /v1/status without credentials: %d %s", resp.StatusCode, body)
	}
}

func TestClusterConfigAuth(t *testing.T) {
	env := map[string]string{"GOOD": "a-good-cluster-secret", "SHORT": "short"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		name string
		cfg  ClusterConfig
		want string // "" : no error
		auth bool
	}{
		{"nothing configured", ClusterConfig{}, "", false},
		{"complete", ClusterConfig{ID: "prod", SecretEnv: "GOOD"}, "", true},
		{"id without secret", ClusterConfig{ID: "prod"}, "$FERRY_CLUSTER_SECRET is empty or unset", false},
		{"secret-env unset", ClusterConfig{ID: "prod", SecretEnv: "MISSING"}, "$MISSING is empty or unset", false},
		{"secret without id", ClusterConfig{SecretEnv: "GOOD"}, "cluster.id is not set", false},
		{"short secret", ClusterConfig{ID: "prod", SecretEnv: "SHORT"}, "at least 16", false},
		{"bad id", ClusterConfig{ID: "two words", SecretEnv: "GOOD"}, "cluster.id", false},
		{"bad env name", ClusterConfig{ID: "prod", SecretEnv: "NOT-A-NAME"}, "cluster.secret-env", false},
	} {
		a, err := tc.cfg.auth(lookup, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		case (a != nil) != tc.auth:
			t.Errorf("%s: auth %v, want %v", tc.name, a != nil, tc.auth)
		}
	}
	// Raft listens for peers: it refuses to start without credentials.
	_, err := ClusterConfig{}.requireAuth("lease type raft", lookup, nil)
	if err == nil || !strings.Contains(err.Error(), "lease type raft needs cluster credentials") {
		t.Fatalf("raft without credentials: %v", err)
	}
	if _, err := (LeaseConfig{Type: "raft"}).open(context.Background(), t.TempDir(), nil, leaseHooks{}); err == nil || !strings.Contains(err.Error(), "cluster credentials") {
		t.Fatalf("raft lease opened without credentials: %v", err)
	}
	// A typo in the section is caught when the file is read.
	if _, err := parseConfig("ferry.yml", []byte("cluster:\n  id: prod\n  secret: x\n"), lookup); err == nil || !strings.Contains(err.Error(), "unknown key cluster.secret") {
		t.Fatalf("unknown cluster key: %v", err)
	}
}
