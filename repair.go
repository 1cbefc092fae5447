package ferry

import (
	"context"
	"fmt"
	"time"
)

// A database whose commit could not be captured (the disk was full when
// its change set was written, say) is marked broken: its log no longer
// matches it, so writes are refused. The cause is often passing, so the
// store retries in the background what start-up recovery does (see
// DB.open): reload the log, roll back a hot journal, and bring the log
// level with the database with one change set of every page. The first
// retry comes soon, later ones back off; nothing holds the database's
// lock while it waits.

const (
	// repairPollInterval is how often the store looks for broken
	// databases whose next retry is due.
	repairPollInterval = 100 * time.Millisecond
	// repairFirstDelay is the wait before the first retry, doubled after
	// each failure up to repairMaxDelay.
	repairFirstDelay = 250 * time.Millisecond
	repairMaxDelay   = 10 * time.Second
	// repairLockTimeout bounds the wait for SQLite's locks, which keep
	// connections out while the database is repaired.
	repairLockTimeout = 5 * time.Second
)

// repairSchedule is when a broken database is retried next; zero while it
// is not broken.
type repairSchedule struct {
	next  time.Time
	delay time.Duration
}

// scheduleRepairLocked plans the first retry after the database broke.
func (d *DB) scheduleRepairLocked() {
	if d.repair.delay == 0 {
		d.repair = repairSchedule{next: time.Now().Add(repairFirstDelay), delay: repairFirstDelay}
	}
}

// repairLoop retries the repair of every broken database when it is due.
func (s *Store) repairLoop(ctx context.Context) {
	t := time.NewTicker(repairPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, d := range s.allDBs() {
				if d.repairDue(now) {
					d.tryRepair(ctx)
				}
			}
		}
	}
}

// isBroken reports whether a commit of the database could not be captured
// and it is not repaired yet.
func (d *DB) isBroken() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.broken != nil
}

// repairDue reports whether the database is broken and its next retry is
// due.
func (d *DB) repairDue(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == stateDatabase && d.broken != nil && !now.Before(d.repair.next)
}

// tryRepair tries once to repair the database, and plans the next try if
// that fails.
func (d *DB) tryRepair(ctx context.Context) {
	err := d.repairOnce(ctx)
	if ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.repair = repairSchedule{}
		d.logger.Info("repaired database: its log matches it again and writes are accepted", "pos", d.pos)
		return
	}
	d.repair.delay = min(2*d.repair.delay, repairMaxDelay)
	d.repair.next = time.Now().Add(d.repair.delay)
	d.logger.Warn("database stays read-only: repair failed", "err", err, "retry_in", d.repair.delay)
}

// repairOnce runs start-up recovery on the broken database while SQLite's
// locks keep connections out of it. A WAL whose writers are fenced is
// left to the fence: the locks would wait on it.
func (d *DB) repairOnce(ctx context.Context) error {
	d.store.mu.Lock()
	locker := d.store.locker
	d.store.mu.Unlock()
	d.mu.Lock()
	fenced := d.follow.unfence != nil
	d.mu.Unlock()
	if locker != nil && !fenced {
		lctx, cancel := context.WithTimeout(ctx, repairLockTimeout)
		unlock, err := locker.LockDatabase(lctx, d.name)
		cancel()
		if err != nil {
			return fmt.Errorf("lock database: %w", err)
		}
		// Unlocking closes files through the mount, which takes d.mu:
		// deferred first, it runs after d.mu is released below.
		defer unlock()
	}
	if err := d.reopen(ctx); err != nil {
		return err
	}
	// Recovery may have rolled a hot journal back into the file.
	d.store.invalidate(d.name)
	return nil
}

// reopen drops what the store holds in memory for the broken database and
// opens it again from its files, as at start-up. A file that has become
// impossible to serve is quarantined instead.
func (d *DB) reopen(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateDatabase || d.broken == nil {
		return nil // deleted, or repaired meanwhile
	}
	if err := d.checkHeader(); err != nil {
		d.quarantineLocked(err)
		return nil
	}
	// The WAL reader stays: handles that bypass the store still use it.
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
	if d.pending != nil {
		d.pending.Close()
		d.pending = nil
	}
	d.pendingSize = 0
	d.queue = nil
	d.journalActive, d.dbSynced = false, false
	d.dirty = make(map[uint32]struct{})
	d.broken = nil
	if err := d.open(ctx); err != nil {
		if d.broken == nil {
			d.broken = fmt.Errorf("database %q: repair: %w", d.name, err)
		}
		return err
	}
	return nil
}
