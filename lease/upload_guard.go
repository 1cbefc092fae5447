package lease

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/ferrydb/ferry"
)

// UploadGuard is the ferry.WriteGuard the replicator asks before each
// upload: it fences uploads with the lease like the store's guard, but it
// never acquires a lease. A node uploads only the databases it already
// writes; a lease is taken by a write, never by the upload of files that
// came from another node.
type UploadGuard struct {
	node string
	mgr  atomic.Pointer[Manager]
}

var _ ferry.WriteGuard = (*UploadGuard)(nil)

// NewUploadGuard returns the guard of node. It refuses every upload until
// Bind gives it the lease manager, which is made after the replicator.
func NewUploadGuard(node string) *UploadGuard { return &UploadGuard{node: node} }

// Bind sets the lease manager the guard asks.
func (g *UploadGuard) Bind(m Manager) { g.mgr.Store(&m) }

// CheckWrite implements ferry.WriteGuard.
func (g *UploadGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	m := g.mgr.Load()
	if m == nil || !g.Holds(name) {
		return 0, fmt.Errorf("%w: %s's lease is not held by this node", ferry.ErrReadOnly, name)
	}
	return (*m).CheckWrite(ctx, name)
}

// Holds reports whether this node holds database name's lease, without
// asking anyone.
func (g *UploadGuard) Holds(name string) bool {
	m := g.mgr.Load()
	if m == nil {
		return false
	}
	holder, _, ok := (*m).Holder(name)
	return ok && holder == g.node
}
