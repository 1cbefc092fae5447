package replicate

import (
	"context"
	"fmt"
	"os"

	"github.com/ferrydb/ferry"
)

// divergesAhead reports whether a local history that runs past the
// bucket's head fails to pass through it. The local log must hold a file
// ending exactly at the head's TXID with the head's checksum; where it
// holds none (its files straddle the head), nothing proves the local copy
// continues the bucket's history, so it counts as diverged.
func (bk *Bucket) divergesAhead(name string, applier ferry.Applier, h head) (bool, string, error) {
	hr, ok := applier.(ferry.HistoryReplacer)
	if !ok {
		return false, "", nil
	}
	sum, found, err := hr.ChecksumAt(name, h.TXID)
	if err != nil {
		return false, "", fmt.Errorf("catch up %s: read local log at TXID %s: %w", name, h.TXID, err)
	}
	switch {
	case !found:
		return true, fmt.Sprintf("the local log runs past the bucket's TXID %s (epoch %d, node %q) without a change set ending there", h.TXID, h.Epoch, h.Node), nil
	case sum != h.Checksum:
		return true, fmt.Sprintf("at the bucket's TXID %s (epoch %d, node %q) the local checksum is %s, the bucket's %s", h.TXID, h.Epoch, h.Node, sum, h.Checksum), nil
	}
	return false, "", nil
}

// replaceDiverged sets the local copy of database name aside and replaces
// it with the bucket's newest state, when applier can do that; otherwise it
// returns an error wrapping ErrConflict, and the node must not write the
// database.
func (bk *Bucket) replaceDiverged(ctx context.Context, name string, applier ferry.Applier, local ferry.Pos, reason string) (ferry.Pos, bool, error) {
	hr, ok := applier.(ferry.HistoryReplacer)
	if !ok {
		return local, false, fmt.Errorf("catch up %s: %w: %s", name, ErrConflict, reason)
	}
	var pos ferry.Pos
	err := bk.withSnapshot(ctx, name, func(f *os.File, _ ferry.Pos) error {
		var err error
		pos, _, err = hr.ReplaceDiverged(ctx, name, f, reason)
		return err
	})
	if err != nil {
		return local, false, fmt.Errorf("catch up %s: %w: %s; replacing the local copy failed: %w", name, ErrConflict, reason, err)
	}
	return pos, true, nil
}

// mayDiverge reports whether a local copy at or past the bucket's head
// could hold a history other than the bucket's, so that following must
// catch it up (and set it aside) even though the bucket has nothing new: a
// former holder that comes back with commits it never uploaded, after
// another node wrote on top of the bucket. Only a copy ahead of the head
// reads its local log.
func (bk *Bucket) mayDiverge(name string, applier ferry.Applier, local ferry.Pos, h head) bool {
	if h.TXID == local.TXID {
		return h.Checksum != local.PostApplyChecksum
	}
	diverged, _, err := bk.divergesAhead(name, applier, h)
	return err == nil && diverged
}
