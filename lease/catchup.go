package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrydb/ferry"
)

// catchUpLimit bounds one catch-up run in the background: long enough to
// download a large database, short enough that a run stuck on a
// connection that never lets go ends and releases the lease.
const catchUpLimit = 2 * time.Minute

// catchUpRun is one run of the catch-up hook for a holding.
type catchUpRun struct {
	done chan struct{}
	err  error // set before done is closed
}

// waitCatchUp runs the catch-up hook for holding h and waits for it.
//
// The hook may have to change the database under every SQLite connection
// (to apply what the bucket holds, or to replace a copy that diverged),
// which needs them all out of it; and the write that asked for the lease
// comes from a connection that holds its own locks while it waits here.
// So the hook runs in the background and the write waits for it at most
// AcquireTimeout. A write that gives up fails as read-only: its
// transaction rolls back and lets go of its locks, the hook finishes, and
// the application's next write finds the lease ready.
func (k *Keeper) waitCatchUp(ctx context.Context, name string, h *holding) error {
	k.mu.Lock()
	run := h.catchUp
	if run == nil {
		run = &catchUpRun{done: make(chan struct{})}
		h.catchUp = run
		go k.runCatchUp(name, h, run)
	}
	k.mu.Unlock()
	timer := time.NewTimer(k.cfg.AcquireTimeout)
	defer timer.Stop()
	select {
	case <-run.done:
		return run.err
	case <-timer.C:
		return fmt.Errorf("catch up %q before writing: %w: still bringing the local copy up to date; retry", name, ferry.ErrReadOnly)
	case <-ctx.Done():
		return fmt.Errorf("catch up %q before writing: %w: %w", name, ferry.ErrReadOnly, ctx.Err())
	}
}

// runCatchUp runs the catch-up hook once. On success the holding becomes
// ready for writes; on failure the lease is released, so that the next
// write starts again from a fresh grant.
func (k *Keeper) runCatchUp(name string, h *holding, run *catchUpRun) {
	defer close(run.done)
	ctx, cancel := context.WithTimeout(context.Background(), catchUpLimit)
	defer cancel()
	go func() {
		select {
		case <-k.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := k.cfg.CatchUp(ctx, name); err != nil {
		k.log.Warn("lease catch-up failed; releasing", "db", name, "epoch", h.lease.Epoch, "err", err)
		rctx, rcancel := context.WithTimeout(context.Background(), k.cfg.AcquireTimeout)
		k.mu.RLock()
		current := k.held[name] == h
		k.mu.RUnlock()
		if current {
			_ = k.release(rctx, name, "")
		}
		rcancel()
		run.err = fmt.Errorf("catch up %q before writing: %w: %w", name, ferry.ErrReadOnly, err)
		return
	}
	k.mu.Lock()
	if k.held[name] == h {
		h.ready = true
	}
	k.mu.Unlock()
}
