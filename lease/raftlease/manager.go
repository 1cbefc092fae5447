// Package raftlease keeps Ferry's lease table in Raft: every node holds a
// replica, so each knows who writes each database without asking. Grants,
// renewals and releases are Raft log entries proposed by the leader, which
// stamps them with its clock; the table is stored in raft-boltdb and
// snapshotted like any other Raft state machine.
package raftlease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/peerauth"
	"github.com/ferrydb/ferry/lease"
)

// Config configures a Raft lease manager.
type Config struct {
	// Node is this node's ID, unique in the cluster and stable across
	// restarts (FLY_MACHINE_ID on Fly.io).
	Node string
	// Region is this node's region, used for placement.
	Region string
	// Bind is the TCP address the Raft port listens on, e.g. ":20202".
	// Ignored when Listener is set.
	Bind string
	// Listener, if set, is used instead of listening on Bind.
	Listener net.Listener
	// Advertise is the address peers dial. Default: the listener's address.
	Advertise string
	// URL is this node's advertised HTTP URL (http.advertise-url), which
	// it registers with the cluster so that readers find the holder's
	// peer stream. Empty: no stream is served.
	URL string
	// Dir holds raft.db (raft-boltdb) and snapshots. Empty keeps everything
	// in memory, which is only for tests.
	Dir string
	// Peers lists the Raft addresses of the other nodes (the local address
	// may be included). Empty together with Discovery means a single node.
	Peers []string
	// Discovery is a DNS name whose addresses are the peers, such as
	// "myapp.internal" on Fly.io; DiscoveryPort is their Raft port
	// (default: the advertised port).
	Discovery     string
	DiscoveryPort int
	// MaxVoters caps the voting members; others join as non-voters.
	// Default 5. Keep it odd: an even count tolerates no more failures
	// than the odd count below it.
	MaxVoters int
	// DeadAfter is how long the leader waits for an unreachable member
	// before removing it. Default 10 minutes.
	DeadAfter time.Duration
	// TTL is the lease duration. Default 10s.
	TTL time.Duration
	// AcquireTimeout bounds the wait for an on-demand acquire. Default 5s.
	AcquireTimeout time.Duration
	// Placement restricts who may hold which lease.
	Placement lease.Placement
	// CatchUp runs after each grant, before the first write.
	CatchUp lease.CatchUp
	// Drain runs before each release or handoff of a held lease.
	Drain lease.Drain
	// HeartbeatTimeout and ElectionTimeout tune Raft (default 1s each).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	Logger           *slog.Logger
	// Auth, if set, is required of every connection to the Raft port,
	// Raft's own and lease requests alike, and sent on every connection
	// this node opens. Nil accepts any peer: only for tests.
	Auth *peerauth.Auth
}

func (c *Config) setDefaults() {
	if c.MaxVoters <= 0 {
		c.MaxVoters = 5
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 10 * time.Minute
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.AcquireTimeout <= 0 {
		c.AcquireTimeout = 5 * time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Manager is a lease.Manager backed by Raft.
type Manager struct {
	lease.Watchers
	cfg    Config
	log    *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	mux    *mux
	keeper *lease.Keeper
	addr   string // advertised Raft address
	closer func() error

	health *health
	// memberMu serializes membership changes on the leader, so concurrent
	// joins cannot both see a free voter seat.
	memberMu sync.Mutex

	ready   chan struct{} // closed once Open has finished
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
}

var _ lease.Manager = (*Manager)(nil)

// Open starts the local Raft node. A node with no state and no peers
// bootstraps a single-node cluster; otherwise it joins its peers in the
// background and acquires leases once a leader exists.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if cfg.Node == "" {
		return nil, errors.New("raft lease: empty node ID")
	}
	if err := cfg.Placement.Validate(); err != nil {
		return nil, fmt.Errorf("raft lease: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), stop: make(chan struct{})}
	m.fsm = newFSM(m.applied)
	m.health = newHealth()

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Bind); err != nil {
			return nil, fmt.Errorf("raft lease: listen on %s: %w", cfg.Bind, err)
		}
	}
	m.addr = cfg.Advertise
	if m.addr == "" {
		m.addr = ln.Addr().String()
	}
	adv, err := net.ResolveTCPAddr("tcp", m.addr)
	if err != nil || adv.IP == nil || adv.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft lease: advertise address %q must be a reachable IP and port (set lease.raft.advertise)", m.addr)
	}
	m.mux = newMux(ln, adv, sourceAddr(ln.Addr()), cfg.Auth, m.serveRPC, m.refuseRPC)

	if err := m.startRaft(); err != nil {
		m.mux.close()
		return nil, err
	}
	m.keeper = lease.NewKeeper(authority{m}, lease.KeeperConfig{
		Node: cfg.Node, TTL: cfg.TTL, AcquireTimeout: cfg.AcquireTimeout,
		CatchUp: cfg.CatchUp, Drain: cfg.Drain, Allowed: m.allowed, Logger: cfg.Logger,
	})
	close(m.ready)
	m.wg.Add(3)
	go m.joinLoop()
	go m.reapLoop()
	go m.preferLoop()
	return m, nil
}

// sourceAddr returns the IP outbound connections should come from: the
// listener's, when it is bound to one address, so peers (and firewalls)
// see the same address the node advertises.
func sourceAddr(a net.Addr) *net.TCPAddr {
	t, ok := a.(*net.TCPAddr)
	if !ok || t.IP == nil || t.IP.IsUnspecified() {
		return nil
	}
	return &net.TCPAddr{IP: t.IP}
}

func (m *Manager) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(m.cfg.Node)
	rc.HeartbeatTimeout = m.cfg.HeartbeatTimeout
	rc.ElectionTimeout = m.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = m.cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 10 * time.Millisecond
	rc.Logger = newHCLogger(m.log)

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if m.cfg.Dir == "" {
		s := raft.NewInmemStore()
		logs, stable, snaps = s, s, raft.NewInmemSnapshotStore()
		m.closer = func() error { return nil }
	} else {
		if err := os.MkdirAll(m.cfg.Dir, 0o755); err != nil {
			return fmt.Errorf("raft lease: create data dir: %w", err)
		}
		b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(m.cfg.Dir, "raft.db")})
		if err != nil {
			return fmt.Errorf("raft lease: open raft.db: %w", err)
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(m.cfg.Dir, 2, rc.Logger)
		if err != nil {
			b.Close()
			return fmt.Errorf("raft lease: open snapshots: %w", err)
		}
		logs, stable, snaps = b, b, fs
		m.closer = b.Close
	}
	m.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{m.mux}, MaxPool: 3, Timeout: 5 * time.Second, Logger: rc.Logger,
	})
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		m.closer()
		return fmt.Errorf("raft lease: inspect state: %w", err)
	}
	r, err := raft.NewRaft(rc, m.fsm, logs, stable, snaps, m.trans)
	if err != nil {
		m.closer()
		return fmt.Errorf("raft lease: start raft: %w", err)
	}
	m.raft = r
	r.RegisterObserver(raft.NewObserver(m.health.ch, false, nil))
	if !hasState && len(m.cfg.Peers) == 0 && m.cfg.Discovery == "" {
		m.log.Info("bootstrapping single-node lease cluster", "node", m.cfg.Node, "addr", m.addr)
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: raft.ServerID(m.cfg.Node), Address: raft.ServerAddress(m.addr), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("raft lease: bootstrap: %w", err)
		}
	}
	return nil
}

// applied relays lease table changes to watchers, and takes a lease handed
// off to this node before anyone else may.
func (m *Manager) applied(l lease.Lease) {
	m.Emit(lease.Event{Name: l.Name, Holder: l.Holder, Epoch: l.Epoch})
	if l.Holder == "" && l.ReservedFor == m.cfg.Node {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.AcquireTimeout)
			defer cancel()
			if _, err := m.keeper.Acquire(ctx, l.Name); err != nil {
				m.log.Warn("take handed-off lease", "db", l.Name, "err", err)
			}
		}()
	}
}

// apply runs a lease command through the leader.
func (m *Manager) apply(ctx context.Context, c command) (lease.Lease, error) {
	return m.applyVia(ctx, c, 0)
}

func (m *Manager) applyVia(ctx context.Context, c command, hops int) (lease.Lease, error) {
	if m.raft.State() == raft.Leader {
		return m.applyLocal(ctx, c)
	}
	addr, _ := m.raft.LeaderWithID()
	if addr == "" {
		return lease.Lease{}, errNoLeader
	}
	if hops >= maxHops {
		return lease.Lease{}, fmt.Errorf("forward to leader %s: %w", addr, errNoLeader)
	}
	return m.call(ctx, string(addr), rpcRequest{Op: rpcApply, Hops: hops + 1, Command: &c})
}

// applyLocal proposes c on the leader, stamping it with the leader's clock.
func (m *Manager) applyLocal(ctx context.Context, c command) (lease.Lease, error) {
	if c.Op == opGrant && c.Prefer != "" && m.regionUp(c.Prefer, c.Node) {
		return lease.Lease{}, fmt.Errorf("database %q prefers region %q and a candidate there is up: %w", c.Name, c.Prefer, lease.ErrNotCandidate)
	}
	c.Now = time.Now().UnixNano()
	b, err := json.Marshal(c)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("encode lease command: %w", err)
	}
	timeout := rpcTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := m.raft.Apply(b, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return lease.Lease{}, fmt.Errorf("raft apply %s: %w", c.Op, err)
		}
	case <-ctx.Done():
		return lease.Lease{}, fmt.Errorf("raft apply %s: %w", c.Op, ctx.Err())
	}
	res, _ := f.Response().(applyResult)
	return res.Lease, res.Err
}

// authority adapts the manager to lease.Authority for the keeper.
type authority struct{ m *Manager }

func (a authority) Grant(ctx context.Context, name string) (lease.Lease, error) {
	c := command{Op: opGrant, Name: name, Node: a.m.cfg.Node, TTL: int64(a.m.cfg.TTL)}
	if want, ok := a.m.cfg.Placement.PreferredRegion(name); ok && want != a.m.cfg.Region {
		c.Prefer = want
	}
	return a.m.apply(ctx, c)
}

func (a authority) Extend(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	return a.m.apply(ctx, command{Op: opExtend, Name: l.Name, Node: a.m.cfg.Node, Epoch: l.Epoch, TTL: int64(a.m.cfg.TTL)})
}

func (a authority) Revoke(ctx context.Context, l lease.Lease, reserveFor string) error {
	_, err := a.m.apply(ctx, command{Op: opRevoke, Name: l.Name, Node: a.m.cfg.Node, Epoch: l.Epoch, TTL: int64(a.m.cfg.TTL), ReserveFor: reserveFor})
	return err
}

// allowed applies the local part of placement: whether this node is a
// candidate at all. The preferred-region rule is checked by the leader,
// which alone knows which members are up (see regionUp).
func (m *Manager) allowed(name string) error {
	return m.cfg.Placement.Allowed(name, m.cfg.Node, m.cfg.Region, nil)
}

// regionUp reports, on the leader, whether a lease candidate other than
// except in region is a member that answers heartbeats.
func (m *Manager) regionUp(region, except string) bool {
	cf := m.raft.GetConfiguration()
	if cf.Error() != nil {
		return false
	}
	for _, s := range cf.Configuration().Servers {
		id := string(s.ID)
		if id == except {
			continue
		}
		n, ok := m.fsm.node(id)
		if !ok && !m.health.failing(id) {
			// A member whose region is not registered yet (it registers
			// as it joins) may be in region: until it is known, the
			// preference holds, so no other region takes the lease early.
			return true
		}
		if ok && n.Region == region && m.cfg.Placement.Candidate(id, n.Region) && !m.health.failing(id) {
			return true
		}
	}
	return false
}

// WriteTerm implements ferry.WriteTerm.
func (m *Manager) WriteTerm(name string) (uint64, time.Time, bool) { return m.keeper.WriteTerm(name) }

// ProbeLease implements ferry.LeaseProbe from the local replica of the
// table.
func (m *Manager) ProbeLease(name string) ferry.LeaseState {
	l, ok := m.fsm.get(name)
	return m.keeper.Probe(name, l, ok)
}

// CheckWrite implements ferry.WriteGuard.
func (m *Manager) CheckWrite(ctx context.Context, name string) (uint64, error) {
	return m.keeper.CheckWrite(ctx, name)
}

// Holder implements ferry.LeaseView from the local replica of the table.
func (m *Manager) Holder(name string) (string, uint64, bool) {
	// The local replica may not have applied this node's own grant yet.
	if l, ok := m.keeper.HeldLease(name); ok {
		return l.Holder, l.Epoch, true
	}
	l, ok := m.fsm.get(name)
	if !ok || !l.Held(time.Now()) {
		return "", 0, false
	}
	return l.Holder, l.Epoch, true
}

// PeerURL implements lease.PeerLocator: the advertised HTTP URL node
// registered when it joined.
func (m *Manager) PeerURL(node string) (string, bool) {
	n, ok := m.fsm.node(node)
	if !ok || n.URL == "" {
		return "", false
	}
	return n.URL, true
}

// Acquire implements lease.Manager.
func (m *Manager) Acquire(ctx context.Context, name string) (lease.Lease, error) {
	return m.keeper.Acquire(ctx, name)
}

// Renew implements lease.Manager.
func (m *Manager) Renew(ctx context.Context, name string) (lease.Lease, error) {
	return m.keeper.Renew(ctx, name)
}

// Release implements lease.Manager.
func (m *Manager) Release(ctx context.Context, name string) error {
	return m.keeper.Release(ctx, name)
}

// Handoff implements lease.Manager. When another node holds the lease the
// request goes to that node, since only a holder can stop its own writes.
func (m *Manager) Handoff(ctx context.Context, name, node string) error {
	if err := m.checkMember(node); err != nil {
		return fmt.Errorf("handoff %q: %w", name, err)
	}
	// A follower's replica may trail the leader by a heartbeat or so.
	l, ok := m.fsm.get(name)
	for wait := time.Now().Add(m.cfg.HeartbeatTimeout); (!ok || !l.Held(time.Now())) && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return fmt.Errorf("handoff %q: %w", name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		l, ok = m.fsm.get(name)
	}
	if !ok || !l.Held(time.Now()) {
		return fmt.Errorf("handoff %q: nobody holds it: %w", name, lease.ErrNotHeld)
	}
	if l.Holder == node {
		return nil
	}
	if l.Holder == m.cfg.Node {
		return m.handoffLocal(ctx, name, node)
	}
	addr, err := m.memberAddr(l.Holder)
	if err != nil {
		return fmt.Errorf("handoff %q: %w", name, err)
	}
	if _, err := m.call(ctx, addr, rpcRequest{Op: rpcHandoff, Name: name, Target: node}); err != nil {
		return fmt.Errorf("handoff %q via holder %s: %w", name, l.Holder, err)
	}
	return nil
}

// handoffLocal hands a lease this node holds to node. The leader first
// confirms that placement lets node take it, so a refused move leaves the
// lease where it was; once released, the handoff is reported done only
// when node holds the lease.
func (m *Manager) handoffLocal(ctx context.Context, name, node string) error {
	if err := m.checkTargetVia(ctx, name, node, 0); err != nil {
		return err
	}
	if err := m.keeper.Handoff(ctx, name, node); err != nil {
		return err
	}
	return m.awaitHolder(ctx, name, node)
}

// checkTargetVia asks the leader whether node may take database name's
// lease now. Only the leader knows which candidates are up, which the
// preferred-region rule depends on.
func (m *Manager) checkTargetVia(ctx context.Context, name, node string, hops int) error {
	if m.raft.State() == raft.Leader {
		return m.checkTarget(name, node)
	}
	addr, _ := m.raft.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("check handoff target: %w", errNoLeader)
	}
	if hops >= maxHops {
		return fmt.Errorf("check handoff target via leader %s: %w", addr, errNoLeader)
	}
	_, err := m.call(ctx, string(addr), rpcRequest{Op: rpcCheckTarget, Hops: hops + 1, Name: name, Target: node})
	return err
}

// checkTarget reports, on the leader, why node may not be granted database
// name's lease now: it is not a member, not a lease candidate, or outside
// the database's preferred region while a candidate there is up.
func (m *Manager) checkTarget(name, node string) error {
	if err := m.checkMember(node); err != nil {
		return err
	}
	n, _ := m.fsm.node(node)
	return m.cfg.Placement.Allowed(name, node, n.Region, func(region string) bool { return m.regionUp(region, node) })
}

// awaitHolder waits, at most the acquire timeout, until the local replica
// of the table shows node holding database name's lease.
func (m *Manager) awaitHolder(ctx context.Context, name, node string) error {
	deadline := time.Now().Add(m.cfg.AcquireTimeout)
	for {
		if l, ok := m.fsm.get(name); ok && l.Holder == node && l.Held(time.Now()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("released %q for %q, which has not taken it within %s; nobody holds it now", name, node, m.cfg.AcquireTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("released %q for %q, which had not taken it yet: %w", name, node, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (m *Manager) checkMember(node string) error {
	_, err := m.memberAddr(node)
	return err
}

func (m *Manager) memberAddr(node string) (string, error) {
	cf := m.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return "", fmt.Errorf("read raft configuration: %w", err)
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == node {
			return string(s.Address), nil
		}
	}
	return "", fmt.Errorf("node %q is not a cluster member: %w", node, lease.ErrUnknownNode)
}

// Status implements lease.Manager.
func (m *Manager) Status(ctx context.Context) (lease.Status, error) {
	st := lease.Status{Type: "raft", Node: m.cfg.Node, Region: m.cfg.Region}
	_, leader := m.raft.LeaderWithID()
	st.Leader = string(leader)
	st.Term, _ = strconv.ParseUint(m.raft.Stats()["term"], 10, 64)
	cf := m.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return st, fmt.Errorf("read raft configuration: %w", err)
	}
	failing := m.unreachable(ctx, leader)
	for _, s := range cf.Configuration().Servers {
		mb := lease.Member{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter}
		if n, ok := m.fsm.node(mb.ID); ok {
			mb.Region = n.Region
		}
		switch {
		case s.ID == leader:
			mb.Role = "leader"
		case mb.Voter:
			mb.Role = "follower"
		default:
			mb.Role = "nonvoter"
		}
		mb.Failing = failing[mb.ID]
		st.Members = append(st.Members, mb)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	st.Leases = m.fsm.leases()
	return st, nil
}

// Intervals returns this node's recorded tenures of name.
func (m *Manager) Intervals(name string) []lease.Interval { return m.keeper.Intervals(name) }

// Addr returns the advertised Raft address.
func (m *Manager) Addr() string { return m.addr }

// Close releases this node's leases, hands Raft leadership to another
// voter if it has it, and stops.
func (m *Manager) Close() error {
	return m.shutdown(true)
}

// shutdown stops the node; graceful releases leases first, otherwise it
// stops as abruptly as a crash would.
func (m *Manager) shutdown(graceful bool) error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.AcquireTimeout)
		if err := m.keeper.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
		if m.raft.State() == raft.Leader && m.voters() > 1 {
			if err := m.raft.LeadershipTransfer().Error(); err != nil {
				m.log.Debug("leadership transfer on shutdown", "err", err)
			}
		}
	} else {
		m.keeper.Abandon()
	}
	close(m.stop)
	m.wg.Wait()
	if err := m.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	if err := m.trans.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := m.mux.close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	if err := m.closer(); err != nil {
		errs = append(errs, fmt.Errorf("close raft.db: %w", err))
	}
	return errors.Join(errs...)
}

func (m *Manager) voters() int {
	cf := m.raft.GetConfiguration()
	if cf.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}
