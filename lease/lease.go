// Package lease decides which node may write each database. Every database
// has its own write lease, so each tenant's writer can live in its home
// region. A lease carries an epoch, a fencing token that only ever grows:
// the write path and the bucket upload both present it, so a node whose
// lease has lapsed can neither commit nor upload under it.
//
// Three implementations share the Manager interface: a Raft-replicated lease
// table (package lease/raftlease), S3 conditional writes (lease/s3lease) and
// a fixed primary (Static, in this package).
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrydb/ferry"
)

// Errors returned by managers. Callers match them with errors.Is.
var (
	// ErrHeld means another node holds the lease. It wraps ferry.ErrReadOnly
	// so the write path reports it as a read-only database.
	ErrHeld = fmt.Errorf("lease held by another node: %w", ferry.ErrReadOnly)

	// ErrNotCandidate means placement rules forbid this node from holding
	// the lease. It wraps ferry.ErrReadOnly.
	ErrNotCandidate = fmt.Errorf("node may not hold this lease: %w", ferry.ErrReadOnly)

	// ErrLost means a lease this node held was taken over or expired before
	// it could be renewed. It wraps ferry.ErrReadOnly.
	ErrLost = fmt.Errorf("lease lost: %w", ferry.ErrReadOnly)

	// ErrNotHeld is returned by Renew, Release and Handoff for a lease this
	// node does not hold.
	ErrNotHeld = errors.New("lease not held by this node")

	// ErrUnknownNode is returned by Handoff for a target that is not a
	// member of the cluster.
	ErrUnknownNode = errors.New("unknown node")

	// ErrUnavailable means the lease authority (Raft quorum or bucket) could
	// not be reached in time. It wraps ferry.ErrReadOnly.
	ErrUnavailable = fmt.Errorf("lease authority unavailable: %w", ferry.ErrReadOnly)

	// ErrCorrupt means the authority holds a lease record this node cannot
	// read. Acquiring fails at once rather than retrying.
	ErrCorrupt = errors.New("unreadable lease record")

	// ErrClosed is returned after Close.
	ErrClosed = errors.New("lease manager closed")
)

// Lease is one database's write lease as the authority records it.
type Lease struct {
	// Name is the database name.
	Name string `json:"name"`
	// Holder is the node ID of the holder, or empty when released.
	Holder string `json:"holder"`
	// Epoch is the fencing token: it grows with every new grant and is kept
	// across releases.
	Epoch uint64 `json:"epoch"`
	// Expires is when the authority considers the lease free again, by the
	// clock of the node that granted or renewed it.
	Expires time.Time `json:"expires"`
	// ReservedFor names the node a handoff is moving the lease to; until
	// ReservedUntil only that node may take it.
	ReservedFor   string    `json:"reservedFor,omitempty"`
	ReservedUntil time.Time `json:"reservedUntil,omitempty"`
}

// Held reports whether l has a holder that has not expired at now.
func (l Lease) Held(now time.Time) bool {
	return l.Holder != "" && now.Before(l.Expires)
}

// Event reports a change of a database's lease. Holder is empty when the
// lease was released or expired.
type Event struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Epoch  uint64 `json:"epoch"`
}

// Member is one node of the cluster as the status report shows it.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
	Region  string `json:"region,omitempty"`
	// Role is "leader", "follower" or "nonvoter" for Raft, "primary" or
	// "replica" for a static setup.
	Role string `json:"role"`
	// Voter reports whether the node votes in Raft elections.
	Voter bool `json:"voter"`
	// Failing reports that the Raft leader's heartbeats to this node fail,
	// as the leader sees it (a follower asks the leader), or, on a node
	// that cannot reach the leader, that the leader does not answer.
	Failing bool `json:"failing,omitempty"`
}

// PeerLocator is implemented by a Manager that knows where other nodes
// serve their peer stream: the advertised HTTP URL each node published
// with its membership or its lease.
type PeerLocator interface {
	// PeerURL returns the advertised HTTP URL of node; ok is false when
	// the node published none.
	PeerURL(node string) (url string, ok bool)
}

// Status is a snapshot of the lease state as seen by the local node.
type Status struct {
	// Type is "raft", "static" or "s3".
	Type   string `json:"type"`
	Node   string `json:"node"`
	Region string `json:"region,omitempty"`
	// Leader and Term describe Raft; they are empty for other types.
	Leader  string   `json:"leader,omitempty"`
	Term    uint64   `json:"term,omitempty"`
	Members []Member `json:"members"`
	// Leases lists every database lease the local node knows about.
	Leases []Lease `json:"leases"`
}

// CatchUp runs after this node acquires database name's lease and before
// its first write under it, typically to apply change sets from the bucket
// that the previous holder shipped. An error releases the lease.
type CatchUp func(ctx context.Context, name string) error

// Drain runs before this node gives up database name's lease (release,
// handoff or clean shutdown) while the lease is still valid, typically to
// upload change sets the bucket lacks so the next holder's catch-up finds
// them. An error stops a handoff; a shutdown releases anyway.
type Drain func(ctx context.Context, name string) error

// Manager grants and tracks write leases. It implements ferry.WriteGuard
// for the write path and ferry.LeaseView for the mount's holder files.
type Manager interface {
	ferry.WriteGuard
	ferry.LeaseView

	// Acquire takes database name's lease for this node, waiting a bounded
	// time for the authority. It returns ErrHeld when another node holds it.
	Acquire(ctx context.Context, name string) (Lease, error)

	// Renew extends a lease this node holds. Leases are renewed in the
	// background; Renew forces one round now.
	Renew(ctx context.Context, name string) (Lease, error)

	// Release gives up a lease this node holds, at once.
	Release(ctx context.Context, name string) error

	// Handoff moves database name's lease to node, which may then take it
	// before anyone else. It returns ErrUnknownNode for a node that is not a
	// member.
	Handoff(ctx context.Context, name, node string) error

	// Watch calls fn for every lease change this node learns of, until the
	// returned stop function is called. fn must not block.
	Watch(fn func(Event)) (stop func())

	// Status returns a snapshot for `ferry status`.
	Status(ctx context.Context) (Status, error)

	// Close releases every lease this node holds and stops the manager.
	Close() error
}
