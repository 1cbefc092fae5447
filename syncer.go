package ferry

import (
	"context"
	"time"
)

// groupSyncDelay is how long change sets that the application did not ask
// to be durable (WAL mode with synchronous=NORMAL) wait, so that one fsync
// covers many of them.
const groupSyncDelay = 10 * time.Millisecond

// persistedFlushDelay is how long change sets that are already durable in
// the pending log wait before the background flusher writes them to the
// LTX log. A database that commits a few times a second then gets one LTX
// file for several transactions, not one each, and the replicator, which
// uploads on a longer interval, sees no difference.
const persistedFlushDelay = 500 * time.Millisecond

// kickSyncer wakes the background syncer.
func (s *Store) kickSyncer() {
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
}

// syncLoop syncs change sets written without a sync, in groups.
func (s *Store) syncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncKick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(groupSyncDelay):
		}
		var next time.Time
		for _, db := range s.allDBs() {
			if db.isBroken() {
				continue // repairLoop mends it; flushing would fail again
			}
			due, err := db.flushBackground(time.Now())
			if err != nil {
				s.logger.Error("sync change sets", "db", db.name, "err", err)
			}
			if !due.IsZero() && (next.IsZero() || due.Before(next)) {
				next = due
			}
		}
		if !next.IsZero() {
			// Come back for the change sets left waiting, even if no
			// commit wakes the syncer first.
			time.AfterFunc(time.Until(next), s.kickSyncer)
		}
	}
}

// retentionLoop enforces the local log's retention window.
func (s *Store) retentionLoop(ctx context.Context) {
	every := s.opts.Retention / 10
	every = max(every, time.Second)
	every = min(every, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, db := range s.allDBs() {
				if !db.isDatabase() {
					continue
				}
				if err := db.enforceRetention(now); err != nil {
					s.logger.Error("enforce LTX retention", "db", db.name, "err", err)
				}
			}
		}
	}
}

// flushBackground writes the captured change sets to the LTX log without
// syncing the file: the pending log keeps them durable until the store's
// checkpoint syncs it. Change sets that are all in the pending log wait
// until persistedFlushDelay after the oldest was captured; it returns when
// they are due, or the zero time if nothing waits.
func (d *DB) flushBackground(now time.Time) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		return time.Time{}, err
	}
	if len(d.queue) > 0 && d.pendingSize <= maxUnsyncedPending {
		persisted := true
		for _, q := range d.queue {
			persisted = persisted && q.persisted
		}
		if due := time.UnixMilli(d.queue[0].hdr.Timestamp).Add(persistedFlushDelay); persisted && now.Before(due) {
			return due, nil
		}
	}
	return time.Time{}, d.flushGroupLocked(false)
}

// Flush writes the captured change sets to the LTX log now, without
// syncing the file, and tells the listeners; the store's checkpoint syncs
// it. Closing a database calls it: the change sets an application asked to
// be durable already are, in the pending log, so the close needs no sync.
func (d *DB) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		return err
	}
	return d.flushGroupLocked(false)
}

// allDBs returns every database and candidate.
func (s *Store) allDBs() []*DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	dbs := make([]*DB, 0, len(s.dbs))
	for _, db := range s.dbs {
		dbs = append(dbs, db)
	}
	return dbs
}
