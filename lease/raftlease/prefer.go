package raftlease

import (
	"context"
	"time"
)

// preferLoop brings each database's lease home: a candidate in a
// database's preferred region asks a holder outside that region to hand
// the lease over. The request comes from the would-be holder, not the
// holder, so a lease is only ever handed to a node that is up to take it.
func (m *Manager) preferLoop() {
	defer m.wg.Done()
	if len(m.cfg.Placement.Preferred) == 0 || m.cfg.Region == "" || !m.cfg.Placement.Candidate(m.cfg.Node, m.cfg.Region) {
		return
	}
	period := max(m.cfg.TTL/2, 100*time.Millisecond)
	// asked remembers recent requests so a refused one is not repeated
	// every period.
	asked := map[string]time.Time{}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, l := range m.fsm.leases() {
			if !l.Held(now) || l.Holder == m.cfg.Node {
				continue
			}
			if want, ok := m.cfg.Placement.PreferredRegion(l.Name); !ok || want != m.cfg.Region {
				continue
			}
			if n, ok := m.fsm.node(l.Holder); ok && n.Region == m.cfg.Region {
				continue // already home
			}
			if t, ok := asked[l.Name]; ok && now.Sub(t) < 5*m.cfg.TTL {
				continue
			}
			asked[l.Name] = now
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.AcquireTimeout)
			err := m.Handoff(ctx, l.Name, m.cfg.Node)
			cancel()
			if err != nil {
				m.log.Debug("ask for lease in preferred region", "db", l.Name, "holder", l.Holder, "err", err)
			} else {
				m.log.Info("lease moving to its preferred region", "db", l.Name, "from", l.Holder, "region", m.cfg.Region)
			}
		}
		for name, t := range asked {
			if now.Sub(t) >= 5*m.cfg.TTL {
				delete(asked, name)
			}
		}
	}
}
