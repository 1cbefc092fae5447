package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

var _ ferry.DurableWaiter = (*Replicator)(nil)

// Bounds of the pause between upload attempts while a synchronous commit
// waits for an unreachable bucket.
const (
	durableRetryMin = 20 * time.Millisecond
	durableRetryMax = time.Second
)

// WaitDurable uploads database name now and returns once the bucket holds
// this node's change sets up to pos.TXID: the acknowledgement of a
// synchronous commit (ferry.DB.WaitSynchronous). Concurrent commits share
// uploads, since one upload takes every file the local log has. While the
// bucket cannot be reached it keeps trying, with backoff, until ctx ends.
// It gives up at once when this node may no longer write the database or
// its history conflicts with the bucket's: the commit can then never be
// acknowledged.
func (r *Replicator) WaitDurable(ctx context.Context, name string, pos ferry.Pos) error {
	if err := ferry.ValidateName(name); err != nil {
		return err
	}
	db := r.get(name)
	wait := durableRetryMin
	for {
		if db.storedThrough(pos.TXID) {
			return nil
		}
		err := r.syncDB(ctx, db)
		if db.storedThrough(pos.TXID) {
			return nil
		}
		db.mu.Lock()
		readOnly := db.readOnly
		db.mu.Unlock()
		switch {
		case readOnly:
			return fmt.Errorf("wait for upload: %w", ferry.ErrReadOnly)
		case errors.Is(err, ErrConflict), errors.Is(err, ferry.ErrStaleEpoch), errors.Is(err, ferry.ErrReadOnly):
			return fmt.Errorf("wait for upload: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("wait for upload of TXID %s: %w", pos.TXID, err)
		case <-t.C:
		}
		wait = min(2*wait, durableRetryMax)
	}
}

// storedThrough reports whether the bucket holds this node's change sets
// up to txid: stored by it, or found there when it caught up.
func (db *database) storedThrough(txid ltx.TXID) bool {
	db.statMu.Lock()
	defer db.statMu.Unlock()
	return db.stored.TXID >= txid
}
