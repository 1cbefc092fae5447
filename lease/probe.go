package lease

import (
	"time"

	"github.com/ferrydb/ferry"
)

// Probe answers ferry.LeaseProbe for a manager built on k, from rec, the
// authority's record of database name as this node last saw it (known is
// false when it has seen none). It never asks the authority.
func (k *Keeper) Probe(name string, rec Lease, known bool) ferry.LeaseState {
	if _, _, ok := k.WriteTerm(name); ok {
		return ferry.LeaseMine
	}
	now := time.Now()
	if known && rec.Holder != k.cfg.Node {
		if rec.Held(now) {
			return ferry.LeaseElsewhere
		}
		if rec.Holder == "" && rec.ReservedFor != "" && rec.ReservedFor != k.cfg.Node && now.Before(rec.ReservedUntil) {
			return ferry.LeaseElsewhere
		}
	}
	if k.cfg.Allowed != nil && k.cfg.Allowed(name) != nil {
		return ferry.LeaseBarred
	}
	return ferry.LeaseFree
}
