package ferry

import (
	"context"
	"time"
)

// groupSyncDelay is how long change sets that the application did not ask
// to be durable (WAL mode with synchronous=NORMAL) wait, so that one fsync
// covers many of them.
const groupSyncDelay = 10 * time.Millisecond

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
		for _, db := range s.allDBs() {
			if db.isBroken() {
				continue // repairLoop mends it; flushing would fail again
			}
			if err := db.Sync(); err != nil {
				s.logger.Error("sync change sets", "db", db.name, "err", err)
			}
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
