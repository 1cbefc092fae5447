package raftlease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ferrydb/ferry/lease"
)

// Lease requests between nodes: a follower forwards commands to the
// leader (only the leader may append to the Raft log), a new node asks to
// join, and any node may ask a holder to hand a lease off.
const (
	rpcApply   = "apply"
	rpcJoin    = "join"
	rpcHandoff = "handoff"
	// rpcCheckTarget asks the leader whether placement lets a node take a
	// lease now, before its holder hands it over.
	rpcCheckTarget = "check-target"
	// rpcHealth asks the leader which members its heartbeats fail to
	// reach, for a follower's status.
	rpcHealth = "health"
)

// maxRPCSize bounds one request or response.
const maxRPCSize = 1 << 20

// rpcTimeout bounds one request when the caller's context has no deadline.
const rpcTimeout = 10 * time.Second

// maxHops stops a request from bouncing between nodes that disagree about
// who leads.
const maxHops = 2

type rpcRequest struct {
	Op      string   `json:"op"`
	Hops    int      `json:"hops,omitempty"`
	Command *command `json:"command,omitempty"`
	Join    *joinReq `json:"join,omitempty"`
	Name    string   `json:"name,omitempty"`
	Target  string   `json:"target,omitempty"`
}

type joinReq struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Region string `json:"region,omitempty"`
	URL    string `json:"url,omitempty"`
}

type rpcResponse struct {
	Lease lease.Lease `json:"lease"`
	// Failing answers rpcHealth.
	Failing []string `json:"failing,omitempty"`
	Code    string   `json:"code,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Error codes carry sentinel errors across the wire.
var errorCodes = map[string]error{
	"held":          lease.ErrHeld,
	"lost":          lease.ErrLost,
	"not-candidate": lease.ErrNotCandidate,
	"not-held":      lease.ErrNotHeld,
	"unknown-node":  lease.ErrUnknownNode,
	"no-leader":     errNoLeader,
	"unauthorized":  ErrUnauthorized,
}

// ErrUnauthorized means a peer refused this node's cluster ID or secret.
var ErrUnauthorized = errors.New("refused by peer: cluster ID or secret does not match")

// errNoLeader means the cluster has no leader right now; callers retry.
var errNoLeader = errors.New("no raft leader")

// remoteError is an error reported by another node.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func encodeError(resp *rpcResponse, err error) {
	resp.Error = err.Error()
	for code, s := range errorCodes {
		if errors.Is(err, s) {
			resp.Code = code
			return
		}
	}
}

func decodeError(resp rpcResponse) error {
	if resp.Error == "" {
		return nil
	}
	return &remoteError{msg: resp.Error, sentinel: errorCodes[resp.Code]}
}

// call sends one request to the node at addr.
func (m *Manager) call(ctx context.Context, addr string, req rpcRequest) (lease.Lease, error) {
	resp, err := m.exchange(ctx, addr, req)
	return resp.Lease, err
}

// exchange sends one request to the node at addr and returns the whole
// response.
func (m *Manager) exchange(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(rpcTimeout)
	}
	c, err := m.mux.dial(addr, protoRPC, time.Until(deadline))
	if err != nil {
		return rpcResponse{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(deadline)
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return rpcResponse{}, fmt.Errorf("send %s request to %s: %w", req.Op, addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(c, maxRPCSize)).Decode(&resp); err != nil {
		return rpcResponse{}, fmt.Errorf("read %s response from %s: %w", req.Op, addr, err)
	}
	return resp, decodeError(resp)
}

// refuseRPC answers a lease request whose connection failed cluster auth,
// without reading the request.
func (m *Manager) refuseRPC(c net.Conn, err error) {
	resp := rpcResponse{Code: "unauthorized", Error: fmt.Sprintf("%s refused this node: %v", m.addr, err)}
	if json.NewEncoder(c).Encode(resp) != nil {
		return
	}
	// Closing with the request unread would reset the connection, and the
	// caller could lose the answer; read what it sent until it hangs up.
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, maxRPCSize))
}

// serveRPC answers one request on c.
func (m *Manager) serveRPC(c net.Conn) {
	defer c.Close()
	// Peers may call while this node is still starting.
	select {
	case <-m.ready:
	case <-m.stop:
		return
	case <-time.After(rpcTimeout):
		return
	}
	_ = c.SetDeadline(time.Now().Add(rpcTimeout))
	var req rpcRequest
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(c, maxRPCSize)).Decode(&req); err != nil {
		m.log.Debug("bad lease request", "remote", c.RemoteAddr(), "err", err)
		encodeError(&resp, fmt.Errorf("decode lease request: %w", err))
		_ = json.NewEncoder(c).Encode(resp)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout-time.Second)
	defer cancel()
	var err error
	if req.Op == rpcHealth {
		resp.Failing, err = m.failingVia(ctx, req.Hops)
	} else {
		resp.Lease, err = m.handle(ctx, req)
	}
	if err != nil {
		encodeError(&resp, err)
	}
	_ = json.NewEncoder(c).Encode(resp)
}

func (m *Manager) handle(ctx context.Context, req rpcRequest) (lease.Lease, error) {
	switch req.Op {
	case rpcApply:
		if req.Command == nil {
			return lease.Lease{}, errors.New("apply request without command")
		}
		return m.applyVia(ctx, *req.Command, req.Hops)
	case rpcJoin:
		if req.Join == nil || req.Join.ID == "" || req.Join.Addr == "" {
			return lease.Lease{}, errors.New("join request without node ID or address")
		}
		return lease.Lease{}, m.joinVia(ctx, *req.Join, req.Hops)
	case rpcHandoff:
		return lease.Lease{}, m.handoffLocal(ctx, req.Name, req.Target)
	case rpcCheckTarget:
		return lease.Lease{}, m.checkTargetVia(ctx, req.Name, req.Target, req.Hops)
	default:
		return lease.Lease{}, fmt.Errorf("unknown lease request %q", req.Op)
	}
}
