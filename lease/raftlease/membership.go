package raftlease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// joinRetry is the pause between attempts to join the cluster.
const joinRetry = 250 * time.Millisecond

// memberCheck is how often a joined node checks that it still is one.
const memberCheck = time.Second

// joinLoop makes sure this node is a member with its region registered,
// retrying until it succeeds or the manager stops. With no state and no
// leader anywhere, the node with the lowest address among its peers
// bootstraps the cluster and the others join it.
//
// Once joined it keeps checking, since the leader may remove this node
// while it is down or cut off for longer than DeadAfter. A removed node
// hears from no leader again, whatever its own Raft state says, so it
// asks to join again whenever it is missing from its configuration or
// has no leader.
func (m *Manager) joinLoop() {
	defer m.wg.Done()
	req := joinReq{ID: m.cfg.Node, Addr: m.addr, Region: m.cfg.Region, URL: m.cfg.URL}
	joined := false
	for attempt := 0; ; attempt++ {
		wait := joinRetry
		if joined {
			wait = memberCheck
		}
		if attempt > 0 {
			select {
			case <-m.stop:
				return
			case <-time.After(wait):
			}
		}
		if joined {
			if m.memberNow() {
				continue
			}
			m.log.Info("not following a lease cluster leader; asking to join again", "node", m.cfg.Node)
			joined, attempt = false, 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := m.tryJoin(ctx, req)
		cancel()
		if err == nil {
			m.log.Info("joined lease cluster", "node", m.cfg.Node, "addr", m.addr)
			joined = true
			continue
		}
		switch {
		case errors.Is(err, ErrUnauthorized) && attempt%20 == 0:
			// Retrying cannot help until the operator fixes the config.
			m.log.Error("lease cluster refused this node: check cluster.id and the cluster secret", "err", err)
		case attempt%20 == 19:
			m.log.Warn("still joining lease cluster", "err", err)
		}
	}
}

// memberNow reports whether this node follows a leader and is in its own
// latest Raft configuration.
func (m *Manager) memberNow() bool {
	if addr, _ := m.raft.LeaderWithID(); addr == "" {
		return false
	}
	return m.checkMember(m.cfg.Node) == nil
}

func (m *Manager) tryJoin(ctx context.Context, req joinReq) error {
	if addr, _ := m.raft.LeaderWithID(); addr != "" {
		return m.joinVia(ctx, req, 0)
	}
	peers, complete := m.peers(ctx)
	var errs []error
	for _, p := range peers {
		if _, err := m.call(ctx, p, rpcRequest{Op: rpcJoin, Join: &req}); err == nil {
			return nil
		} else {
			errs = append(errs, err)
		}
	}
	// Bootstrap only from a complete peer list: a failed DNS lookup must
	// not make a node believe it is alone and start a second cluster.
	// Nor may a node that peers refused (another cluster's, or one with a
	// wrong secret): they are up, just not its cluster.
	refused := errors.Is(errors.Join(errs...), ErrUnauthorized)
	if complete && !refused && m.lowest(peers) && m.raft.LastIndex() == 0 {
		m.log.Info("no leader among peers; bootstrapping lease cluster", "node", m.cfg.Node, "addr", m.addr)
		f := m.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: raft.ServerID(m.cfg.Node), Address: raft.ServerAddress(m.addr), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			errs = append(errs, fmt.Errorf("bootstrap: %w", err))
		} else if err == nil {
			// Register this node's region as soon as it leads: the others
			// register as they join, and until every member's region is
			// known placement cannot tell whether a preferred region is up.
			if err := m.registerOnceLeader(ctx, req); err == nil {
				return nil
			} else {
				errs = append(errs, err)
			}
		}
	}
	return fmt.Errorf("join lease cluster: %w", errors.Join(errs...))
}

// registerOnceLeader waits until this node, having just bootstrapped the
// cluster, leads it, and then registers it as joinVia registers a joining
// node.
func (m *Manager) registerOnceLeader(ctx context.Context, req joinReq) error {
	for m.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("register after bootstrap: %w", ctx.Err())
		case <-m.stop:
			return errors.New("register after bootstrap: stopping")
		case <-time.After(5 * time.Millisecond):
		}
	}
	return m.joinVia(ctx, req, 0)
}

// lowest reports whether this node's address sorts first among peers.
func (m *Manager) lowest(peers []string) bool {
	for _, p := range peers {
		if p < m.addr {
			return false
		}
	}
	return true
}

// peers returns the other nodes' Raft addresses from config and DNS;
// complete is false when the DNS lookup failed.
func (m *Manager) peers(ctx context.Context) (peers []string, complete bool) {
	var out []string
	complete = true
	add := func(a string) {
		if a != m.addr && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, p := range m.cfg.Peers {
		add(p)
	}
	if m.cfg.Discovery != "" {
		port := m.cfg.DiscoveryPort
		if port == 0 {
			_, ps, _ := net.SplitHostPort(m.addr)
			port, _ = strconv.Atoi(ps)
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, m.cfg.Discovery)
		if err != nil || len(ips) == 0 {
			m.log.Debug("peer discovery", "name", m.cfg.Discovery, "err", err)
			complete = false
		}
		for _, ip := range ips {
			add(net.JoinHostPort(ip, strconv.Itoa(port)))
		}
	}
	slices.Sort(out)
	return out, complete
}

// joinVia adds a node on the leader, forwarding there if needed.
func (m *Manager) joinVia(ctx context.Context, req joinReq, hops int) error {
	if m.raft.State() != raft.Leader {
		addr, _ := m.raft.LeaderWithID()
		if addr == "" || hops >= maxHops {
			return errNoLeader
		}
		_, err := m.call(ctx, string(addr), rpcRequest{Op: rpcJoin, Hops: hops + 1, Join: &req})
		return err
	}
	m.memberMu.Lock()
	defer m.memberMu.Unlock()
	cf := m.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	voters, member := 0, false
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == req.ID {
			if string(s.Address) == req.Addr {
				member = true
				continue
			}
			// The node came back with a new address: replace it.
			if err := m.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return fmt.Errorf("remove %s before re-adding: %w", req.ID, err)
			}
			if s.Suffrage == raft.Voter {
				voters--
			}
		}
	}
	if member {
		m.health.alive(req.ID, time.Now())
	} else {
		var f raft.IndexFuture
		if voters < m.cfg.MaxVoters {
			f = m.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, 0)
		} else {
			f = m.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, 0)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("add %s to cluster: %w", req.ID, err)
		}
		m.health.added(req.ID)
		m.log.Info("added lease cluster member", "node", req.ID, "addr", req.Addr, "voter", voters < m.cfg.MaxVoters)
	}
	if n, ok := m.fsm.node(req.ID); !ok || n.Region != req.Region || n.Addr != req.Addr || n.URL != req.URL {
		if _, err := m.applyLocal(ctx, command{Op: opRegister, Node: req.ID, Region: req.Region, Addr: req.Addr, URL: req.URL}); err != nil {
			return fmt.Errorf("register %s: %w", req.ID, err)
		}
	}
	return nil
}

// reapLoop, on the leader, removes members unreachable for DeadAfter and
// promotes healthy non-voters while voters are below MaxVoters.
func (m *Manager) reapLoop() {
	defer m.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case o := <-m.health.ch:
			m.health.observe(o)
			continue
		case <-t.C:
		}
		if m.raft.State() != raft.Leader {
			continue
		}
		m.reap(time.Now())
	}
}

func (m *Manager) reap(now time.Time) {
	m.memberMu.Lock()
	defer m.memberMu.Unlock()
	cf := m.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	voters := 0
	var spare []raft.Server
	for _, s := range cf.Configuration().Servers {
		id := string(s.ID)
		if id != m.cfg.Node && m.health.failingFor(id, now) > m.cfg.DeadAfter {
			m.log.Warn("removing unreachable lease cluster member", "node", id, "after", m.cfg.DeadAfter)
			if err := m.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				m.log.Warn("remove member", "node", id, "err", err)
			}
			continue
		}
		if s.Suffrage == raft.Voter {
			voters++
		} else if !m.health.failing(id) {
			spare = append(spare, s)
		}
	}
	for _, s := range spare {
		if voters >= m.cfg.MaxVoters {
			break
		}
		if err := m.raft.AddVoter(s.ID, s.Address, 0, 0).Error(); err != nil {
			m.log.Warn("promote member to voter", "node", s.ID, "err", err)
			continue
		}
		voters++
	}
}
