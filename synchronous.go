package ferry

import (
	"context"
	"fmt"
)

// Synchronous databases. Normally a commit returns once it is durable on
// this node, and a failover loses what was not yet uploaded (the loss
// window). For a database the operator marks synchronous, the commit's
// last step (removing, truncating or zeroing the rollback journal, or
// syncing the WAL) returns only once the change set is durable off this
// node, so a failover loses nothing acknowledged.

// DurableWaiter waits until a database's change sets are held durably off
// this node. The replicator implements it by uploading at once.
type DurableWaiter interface {
	// WaitDurable returns nil once change sets of database name up to
	// pos.TXID are durable elsewhere. It keeps trying while that is
	// possible and returns an error when it can never be: this node lost
	// the right to write, or ctx ended.
	WaitDurable(ctx context.Context, name string, pos Pos) error
}

// SetDurableWaiter makes the databases for which synchronous returns true
// synchronous, waiting on w. Call it before Open.
func (s *Store) SetDurableWaiter(w DurableWaiter, synchronous func(name string) bool) {
	s.durable, s.synchronous = w, synchronous
}

// IsSynchronous reports whether commits of database name wait until they
// are durable off this node.
func (s *Store) IsSynchronous(name string) bool {
	return s.durable != nil && s.synchronous != nil && s.synchronous(name)
}

// WaitSynchronous is called by the mount after a request that may have
// committed a transaction. For a synchronous database it writes what was
// captured to the local log and waits until the bucket holds it; for any
// other it returns at once.
//
// The wait does not end when the application gives up on the request:
// once SQLite has written a WAL commit, failing its sync would leave the
// frames unpublished to SQLite's readers though they are captured. It
// ends with the store (Close).
func (d *DB) WaitSynchronous() error {
	if !d.synchronous {
		return nil
	}
	w, ctx := d.store.durable, d.store.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	d.mu.Lock()
	if d.state != stateDatabase {
		d.mu.Unlock()
		return nil
	}
	err := d.flushLocked()
	pos := d.pos
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if pos.IsZero() {
		return nil
	}
	if err := w.WaitDurable(ctx, d.name, pos); err != nil {
		err = fmt.Errorf("synchronous commit of %s at TXID %s: %w", d.name, pos.TXID, err)
		// The application sees only EIO, and the commit is captured and
		// kept: its outcome is unknown to it, so say so here.
		d.logger.Error("synchronous commit not confirmed off this node; it is kept locally and replicated when possible", "txid", pos.TXID, "err", err)
		return err
	}
	return nil
}
