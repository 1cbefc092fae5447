package raftlease

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/peerauth"
)

func testAuth(t *testing.T, id, secret string) *peerauth.Auth {
	t.Helper()
	a, err := peerauth.New(id, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestWrongSecretCannotJoin runs a two-node cluster with a secret, then a
// third node with another secret whose address sorts first. The cluster
// refuses its join with a reason, and the node does not bootstrap a
// cluster of its own although it is "lowest" and hears no leader.
func TestWrongSecretCannotJoin(t *testing.T) {
	good := testAuth(t, "prod", "right-secret-0123456789")
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.Auth = good })
	leader := c.waitLeader()

	ln, err := net.Listen("tcp", "127.0.0.31:0")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := Open(context.Background(), Config{
		Node: "intruder", Listener: ln, Peers: append(c.peers(), ln.Addr().String()),
		TTL: testTTL, HeartbeatTimeout: testElection, ElectionTimeout: testElection,
		Logger: testLogger(t), Auth: testAuth(t, "prod", "wrong-secret-0123456789"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.shutdown(false)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = bad.tryJoin(ctx, joinReq{ID: "intruder", Addr: bad.addr})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("join with a wrong secret: %v, want ErrUnauthorized", err)
	}
	if bad.raft.LastIndex() != 0 {
		t.Fatal("refused node bootstrapped a cluster of its own")
	}
	if err := leader.m.checkMember("intruder"); err == nil {
		t.Fatal("refused node is a member")
	}
	// The cluster itself carries on.
	if _, err := leader.m.CheckWrite(ctx, "after-intruder.db"); err != nil {
		t.Fatalf("cluster broken by a refused node: %v", err)
	}
}

// TestRaftPortRefusesWithoutHello sends a lease request and a Raft
// connection without the cluster's hello, and with another cluster's: the
// request is answered with a refusal and not carried out, and the Raft
// connection is closed unread.
func TestRaftPortRefusesWithoutHello(t *testing.T) {
	good := testAuth(t, "prod", "right-secret-0123456789")
	c := newCluster(t, 1, false, func(cfg *Config) { cfg.Auth = good })
	tn := c.waitLeader()

	other := testAuth(t, "staging", "right-secret-0123456789")
	for _, tc := range []struct {
		name  string
		hello func(io.Writer)
	}{
		{"no hello", func(io.Writer) {}},
		{"other cluster", func(w io.Writer) { _ = other.WriteHello(w) }},
	} {
		var open bytes.Buffer
		open.WriteByte(protoRPC)
		tc.hello(&open)
		open.WriteString(`{"op":"apply","command":{"op":"acquire","name":"stolen.db","node":"evil"}}`)
		resp := rawRequest(t, tn.real, open.Bytes())
		if resp.Code != "unauthorized" || resp.Lease.Holder != "" {
			t.Errorf("%s: lease request answered %+v, want a refusal", tc.name, resp)
		}

		conn, err := net.DialTimeout("tcp", tn.real, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open.Reset()
		open.WriteByte(protoRaft)
		tc.hello(&open)
		open.Write(bytes.Repeat([]byte{0}, 64))
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Write(open.Bytes())
		if n, err := conn.Read(make([]byte, 1)); err == nil || n != 0 {
			t.Errorf("%s: raft connection answered instead of closed", tc.name)
		}
		conn.Close()
	}
	if h, _, ok := tn.m.Holder("stolen.db"); ok {
		t.Fatalf("refused request acquired a lease for %s", h)
	}
	// The right hello is served.
	var open bytes.Buffer
	open.WriteByte(protoRPC)
	_ = good.WriteHello(&open)
	open.WriteString(`{"op":"health"}`)
	if resp := rawRequest(t, tn.real, open.Bytes()); resp.Code != "" || resp.Error != "" {
		t.Fatalf("authenticated request refused: %+v", resp)
	}
}

func rawRequest(t *testing.T, addr string, data []byte) rpcResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp
}
