package replicate

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry"
)

// Stats is a snapshot of the replicator's counters, for `ferry status`.
type Stats struct {
	Puts      int64 // objects written, head objects included
	Gets      int64 // objects read
	Lists     int64 // listings
	Deletes   int64 // objects deleted
	BytesUp   int64 // bytes written
	BytesDown int64 // bytes read
	// Transactions is how many transactions the uploads carried, so that
	// Puts/Transactions is the cost per transaction.
	Transactions int64
	// Rejections counts uploads refused because the bucket's history is
	// not this node's to extend: another writer holds a newer lease epoch,
	// advanced the head first, or wrote a history this one diverges from.
	Rejections int64
	// Divergences counts local copies set aside because their history was
	// not a prefix of the bucket's, and replaced with the bucket's.
	Divergences int64
	// LastError is the most recent upload error, empty after a success.
	LastError     string
	LastErrorTime time.Time
	// Databases holds one entry per database the replicator has seen.
	Databases []DatabaseStats
}

// DatabaseStats is one database's replication state.
type DatabaseStats struct {
	Name string
	// BucketPos is the newest position the bucket holds.
	BucketPos ferry.Pos
	// Backlog is how many local LTX files wait to be uploaded, and
	// BacklogBytes their size.
	Backlog      int
	BacklogBytes int64
	LastError    string
	// Uploads counts the syncs that advanced the bucket's position, and
	// UploadErrors the syncs that failed.
	Uploads      int64
	UploadErrors int64
}

// counters are updated by a countingBackend.
type counters struct {
	puts, gets, lists, deletes, bytesUp, bytesDown atomic.Int64
	txns, stale, diverged                          atomic.Int64
}

// Stats returns the current counters and per-database state.
func (r *Replicator) Stats() Stats {
	s := Stats{
		Puts:         r.counters.puts.Load(),
		Gets:         r.counters.gets.Load(),
		Lists:        r.counters.lists.Load(),
		Deletes:      r.counters.deletes.Load(),
		BytesUp:      r.counters.bytesUp.Load(),
		BytesDown:    r.counters.bytesDown.Load(),
		Transactions: r.counters.txns.Load(),
		Rejections:   r.counters.stale.Load(),
		Divergences:  r.counters.diverged.Load(),
	}
	r.mu.Lock()
	s.LastError, s.LastErrorTime = r.lastErr, r.lastErrTime
	dbs := make([]*database, 0, len(r.dbs))
	for _, db := range r.dbs {
		dbs = append(dbs, db)
	}
	r.mu.Unlock()
	for _, db := range dbs {
		db.statMu.Lock()
		s.Databases = append(s.Databases, DatabaseStats{
			Name:         db.name,
			BucketPos:    db.bucketPos,
			Backlog:      db.backlog,
			BacklogBytes: db.backlogBytes,
			LastError:    db.lastErr,
			Uploads:      db.uploads.Load(),
			UploadErrors: db.uploadErrors.Load(),
		})
		db.statMu.Unlock()
	}
	sort.Slice(s.Databases, func(i, j int) bool { return s.Databases[i].Name < s.Databases[j].Name })
	return s
}

// BucketPos returns the newest position of database name that the bucket
// holds, as far as this replicator knows; ok is false if it knows none.
func (r *Replicator) BucketPos(name string) (ferry.Pos, bool) {
	r.mu.Lock()
	db := r.dbs[name]
	r.mu.Unlock()
	if db == nil {
		return ferry.Pos{}, false
	}
	db.statMu.Lock()
	defer db.statMu.Unlock()
	return db.bucketPos, !db.bucketPos.IsZero()
}

// BucketHead returns the newest position of database name that the bucket
// holds, as far as this replicator knows, and when its writer committed
// it; commit is zero when the bucket's head does not record it. ok is
// false if no position is known.
func (r *Replicator) BucketHead(name string) (pos ferry.Pos, commit time.Time, ok bool) {
	r.mu.Lock()
	db := r.dbs[name]
	r.mu.Unlock()
	if db == nil {
		return ferry.Pos{}, time.Time{}, false
	}
	db.statMu.Lock()
	defer db.statMu.Unlock()
	if db.bucketTimeTXID == db.bucketPos.TXID {
		commit = db.bucketTime
	}
	return db.bucketPos, commit, !db.bucketPos.IsZero()
}
