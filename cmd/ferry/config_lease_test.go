package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferrydb/ferry/lease"
)

func TestLeaseConfigYAML(t *testing.T) {
	const doc = `
lease:
  type: raft
  node: n1
  region: ams
  ttl: 3s
  acquire-timeout: 2s
  candidate-regions: [ams, ord]
  preferred:
    - {pattern: "eu/*", region: ams}
  status:
    listen: unix:ferry.sock
  raft:
    bind: 127.0.0.1:20202
    peers: [127.0.0.2:20202, 127.0.0.3:20202]
    max-voters: 3
    dead-after: 5m
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	l := cfg.Lease
	if l.Type != "raft" || l.TTL != 3*time.Second || l.Raft.DeadAfter != 5*time.Minute || len(l.Raft.Peers) != 2 ||
		l.Preferred[0].Region != "ams" || l.Raft.MaxVoters != 3 {
		t.Fatalf("parsed %+v", l)
	}
	if err := l.validate(); err != nil {
		t.Fatal(err)
	}
	network, addr, err := l.statusListen("/data")
	if err != nil || network != "unix" || addr != "/data/ferry.sock" {
		t.Fatalf("statusListen = %s %s %v", network, addr, err)
	}
}

func TestLeaseConfigRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		cfg  LeaseConfig
		want string
	}{
		{LeaseConfig{Type: "zookeeper"}, "lease.type"},
		{LeaseConfig{Status: StatusConfig{Listen: "0.0.0.0:20203"}}, "loopback"},
		{LeaseConfig{Status: StatusConfig{Listen: "10.0.0.1:20203"}}, "loopback"},
		{LeaseConfig{Status: StatusConfig{Listen: "unix:"}}, "empty unix socket"},
		{LeaseConfig{Status: StatusConfig{Listen: "nonsense"}}, "lease.status.listen"},
		{LeaseConfig{Type: "s3"}, "lease.s3.bucket"},
		{LeaseConfig{TTL: time.Millisecond}, "too short"},
		{LeaseConfig{Preferred: []lease.RegionRule{{Pattern: "[", Region: "x"}}}, "pattern"},
	} {
		err := c.cfg.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want it to mention %q", c.cfg, err, c.want)
		}
		if _, err := c.cfg.open(context.Background(), t.TempDir(), nil, leaseHooks{}); err == nil {
			t.Errorf("%+v: open accepted it", c.cfg)
		}
	}
	var cfg Config
	if err := yaml.Unmarshal([]byte("lease:\n  ttl: soon\n"), &cfg); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestLeaseConfigDefaultIsStatic(t *testing.T) {
	t.Setenv("FLY_MACHINE_ID", "m123")
	t.Setenv("FLY_REGION", "syd")
	m, err := LeaseConfig{}.open(context.Background(), t.TempDir(), nil, leaseHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Type != "static" || st.Node != "m123" || st.Region != "syd" {
		t.Fatalf("status = %+v", st)
	}
	if _, err := m.CheckWrite(context.Background(), "a.db"); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseConfigThreeNodes opens three nodes from configs that differ
// only in node ID, bind address and data directory, as three `ferry
// mount` processes on 127.0.0.1, .2 and .3 would, and checks that they
// form one cluster.
func TestLeaseConfigThreeNodes(t *testing.T) {
	var peers []string
	var lns []net.Listener
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i))
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close() // reserve distinct free ports, then hand them to the nodes
	}
	auth, err := ClusterConfig{ID: "three"}.auth(func(string) (string, bool) { return "three-nodes-secret-0123", true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ms []lease.Manager
	for i := 0; i < 3; i++ {
		cfg := LeaseConfig{
			Type: "raft", Node: fmt.Sprintf("n%d", i+1), TTL: time.Second,
			Raft: RaftLeaseConfig{Bind: peers[i], Peers: peers,
				HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond},
		}
		m, err := cfg.open(context.Background(), t.TempDir(), nil, leaseHooks{Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ms = append(ms, m)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := ms[2].Status(context.Background())
		if err == nil && st.Leader != "" && len(st.Members) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 3-node cluster: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := ms[1].CheckWrite(ctx, "t.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].CheckWrite(ctx, "t.db"); err == nil {
		t.Fatal("two nodes hold the same lease")
	}
	if h, he, ok := ms[1].Holder("t.db"); !ok || h != "n2" || he != e {
		t.Fatalf("holder %q %d %v", h, he, ok)
	}
}
