package ferry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Writes to a WAL served by passthrough cannot be refused one by one. When
// this node's right to write a database ends while such handles are open,
// the store fences the writers instead: it holds SQLite's WAL write lock,
// so no connection can begin a write transaction, until the handles are
// closed or this node is granted a new lease.

// WALFenced reports whether the store holds the database's WAL writers
// out because this node may not write it.
func (d *DB) WALFenced() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.follow.unfence != nil
}

// fence tries once to keep the WAL's writers out, and captures what they
// committed before. It reports whether the fence is up; false with a nil
// error means a writer holds the lock now. It must be called without d.mu:
// taking the lock goes through the mount, which looks the database up.
func (d *DB) fence(epoch uint64) (bool, error) {
	d.store.mu.Lock()
	wf, ok := d.store.locker.(WriterFence)
	d.store.mu.Unlock()
	if !ok {
		return false, errors.New("no writer fence: the store is not mounted")
	}
	unfence, busy, err := wf.FenceWriters(d.name)
	if err != nil || busy {
		if err != nil {
			d.logger.Error("fence WAL writers", "err", err)
		}
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.follow.unfence != nil || d.follow.handles == 0 {
		unfence() // fenced meanwhile, or nothing left to fence
		return d.follow.unfence != nil, nil
	}
	d.follow.unfence, d.follow.fencedEpoch = unfence, epoch
	d.follow.fencedBroken = d.broken != nil
	d.logger.Info("fenced WAL writers: this node may not write the database", "epoch", epoch)
	n, err := d.catchUpWALCountLocked()
	if n > 0 {
		// Committed between the end of the term and the fence. If another
		// node took the lease meanwhile, the bucket refuses them.
		d.logger.Warn("captured commits made as this node's lease ended", "commits", n, "epoch", epoch)
	}
	return true, err
}

// FenceWriters keeps out every writer of database name that could write
// past the store, and writes everything committed so far to the local LTX
// log; the lease layer calls it before giving up a lease, so that the
// drain that follows ships the last commits. It waits for a writer in the
// middle of a transaction until ctx ends.
func (s *Store) FenceWriters(ctx context.Context, name string) error {
	db := s.DB(name)
	if db == nil {
		return nil
	}
	epoch, _ := s.writeTerm(name)
	wait := time.Millisecond
	for {
		db.mu.Lock()
		done := db.follow.handles == 0 || db.follow.unfence != nil
		db.mu.Unlock()
		if done {
			break
		}
		up, err := db.fence(epoch)
		if err != nil {
			return fmt.Errorf("fence writers of %q: %w", name, err)
		}
		if up {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fence writers of %q: a transaction is still open: %w", name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	if err := db.Sync(); err != nil {
		return fmt.Errorf("write the last change sets of %q: %w", name, err)
	}
	return nil
}
