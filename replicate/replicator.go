package replicate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// Replicator ships every database's local LTX log to a bucket, compacts and
// snapshots it there, and restores databases from it. It implements
// ferry.CommitListener and ferry.Restorer.
type Replicator struct {
	bucket   *Bucket
	layout   ferry.Layout
	opts     Options
	counters counters

	mu          sync.Mutex
	dbs         map[string]*database
	lastErr     string
	lastErrTime time.Time

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ ferry.CommitListener = (*Replicator)(nil)
	_ ferry.Restorer       = (*Replicator)(nil)
)

// database is the replicator's state for one database.
type database struct {
	name  string
	dirty atomic.Bool // set by Committed, cleared when a sync starts

	// mu is held for the whole of a sync or compaction, so that one
	// database never has two uploads in flight.
	mu    sync.Mutex
	files *dbFiles // the bucket's view; nil until first loaded
	// needObject is set when the head announces an L0 object that this
	// node has not confirmed is stored.
	needObject   bool
	pendingSince time.Time // when a missing object of another writer was first seen
	lastRun      [SnapshotLevel + 1]time.Time
	// wrote is set once this node has advanced the head in this run, under
	// epoch; only then does it compact and delete in the bucket.
	wrote bool
	epoch uint64
	// readOnly is set when the guard last refused this node the database;
	// its backlog is then left to the writer until the next commit.
	readOnly bool
	// damaged holds the objects found damaged that the local log could
	// not rebuild, so each is reported once and retried only rarely.
	damaged map[string]*damagedObject
	// logChecked is set once the local log is known to have no gap the
	// bucket could refill.
	logChecked bool

	// uploads counts syncs that advanced the bucket's position, and
	// uploadErrors syncs that failed, for metrics.
	uploads, uploadErrors atomic.Int64

	statMu    sync.Mutex
	bucketPos ferry.Pos
	// stored is the newest position this node knows the bucket holds of
	// its own history (Layout.BucketPosPath): what it stored, or caught
	// up to from the bucket.
	stored ferry.Pos
	// bucketTime is the commit time of the change set ending at
	// bucketTimeTXID, the newest whose time is known.
	bucketTime     time.Time
	bucketTimeTXID ltx.TXID
	backlog        int
	backlogBytes   int64
	lastErr        string
}

// New returns a Replicator that uploads the databases under layout to
// backend. Call Start to begin uploading.
func New(backend Backend, layout ferry.Layout, opts Options) *Replicator {
	opts = opts.withDefaults()
	r := &Replicator{
		layout: layout,
		opts:   opts,
		dbs:    map[string]*database{},
		wake:   make(chan struct{}, 1),
	}
	r.bucket = NewBucket(countingBackend{Backend: backend, c: &r.counters}, opts.Prefix, opts.Logger)
	return r
}

// Bucket returns the bucket the replicator uploads to.
func (r *Replicator) Bucket() *Bucket { return r.bucket }

// Start scans the data directory for LTX files not yet uploaded and
// refills gaps in the local logs from the bucket, then uploads in the
// background until Close.
func (r *Replicator) Start(ctx context.Context) error {
	names, err := r.localDatabases()
	if err != nil {
		return fmt.Errorf("replicator: %w", err)
	}
	// Before the store opens the databases, so that recovery finds each
	// log whole.
	// A bucket that does not answer delays the start by at most
	// gapCheckTimeout; the uploads retry later.
	cctx, cancel := context.WithTimeout(ctx, min(r.opts.UploadTimeout, gapCheckTimeout))
	r.checkLocalLogs(cctx, names)
	cancel()
	for _, name := range names {
		r.get(name).dirty.Store(true)
	}
	ctx, cancel = context.WithCancel(ctx)
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.run(ctx)
	return nil
}

// Close stops background uploads. It first tries, until ctx ends, to
// upload what is pending, so a clean shutdown leaves nothing behind.
func (r *Replicator) Close(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
	return r.SyncAll(ctx)
}

// Committed implements ferry.CommitListener. It only marks the database;
// the upload happens on the next interval.
func (r *Replicator) Committed(name string, pos ferry.Pos) {
	if err := ferry.ValidateName(name); err != nil {
		r.opts.Logger.Error("commit reported for an invalid database name", "db", name, "err", err)
		return
	}
	r.get(name).dirty.Store(true)
}

// Restore implements ferry.Restorer. The database is built in its
// metadata directory, outside the tree the mount shows, and renamed to
// path only once complete and verified.
func (r *Replicator) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	if err := ferry.ValidateName(name); err != nil {
		return ferry.Pos{}, err
	}
	pos, err := r.bucket.RestoreTo(ctx, name, path, RestoreOptions{TempDir: r.layout.MetaDir(name)})
	if err != nil {
		return pos, err
	}
	// The bucket holds everything up to pos, so the local log need keep
	// nothing before it.
	if err := r.writeBucketPos(name, pos); err != nil {
		return pos, fmt.Errorf("restore %s: record bucket position: %w", name, err)
	}
	r.setBucketPos(r.get(name), pos)
	return pos, nil
}

// get returns the state of database name, creating it.
func (r *Replicator) get(name string) *database {
	r.mu.Lock()
	defer r.mu.Unlock()
	db := r.dbs[name]
	if db == nil {
		db = &database{name: name, stored: r.readBucketPos(name)}
		r.dbs[name] = db
	}
	return db
}

// run is the background loop: every upload interval it syncs the
// databases that changed or still have a backlog, then runs the
// compactions, snapshots and retention that are due.
func (r *Replicator) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.opts.UploadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
		r.tick(ctx)
	}
}

// tick does one round of work over every database that needs some.
func (r *Replicator) tick(ctx context.Context) {
	r.mu.Lock()
	dbs := make([]*database, 0, len(r.dbs))
	for _, db := range r.dbs {
		dbs = append(dbs, db)
	}
	r.mu.Unlock()

	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	for _, db := range dbs {
		db.statMu.Lock()
		backlog := db.backlog
		db.statMu.Unlock()
		db.mu.Lock()
		readOnly := db.readOnly
		db.mu.Unlock()
		work := db.dirty.Load() || (backlog > 0 && !readOnly)
		if !work {
			db.mu.Lock()
			work = r.maintenanceDue(db)
			db.mu.Unlock()
		}
		if !work {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(db *database) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.syncDB(ctx, db); err != nil {
				return
			}
			mctx, cancel := context.WithTimeout(ctx, 10*r.opts.UploadTimeout)
			defer cancel()
			if err := r.maintain(mctx, db); err != nil {
				r.recordError(db, err)
			}
		}(db)
	}
	wg.Wait()
}

// Sync uploads database name's pending LTX files now.
func (r *Replicator) Sync(ctx context.Context, name string) error {
	if err := ferry.ValidateName(name); err != nil {
		return err
	}
	return r.syncDB(ctx, r.get(name))
}

// SyncAll uploads every database's pending LTX files now, including those
// found on disk that no commit has been reported for.
func (r *Replicator) SyncAll(ctx context.Context) error {
	names, err := r.localDatabases()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := r.Sync(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncDB runs one upload of db and records its outcome.
func (r *Replicator) syncDB(ctx context.Context, db *database) error {
	db.dirty.Store(false)
	ctx, cancel := context.WithTimeout(ctx, r.opts.UploadTimeout)
	defer cancel()
	db.statMu.Lock()
	before := db.bucketPos
	db.statMu.Unlock()
	err := r.upload(ctx, db)
	if err != nil {
		db.uploadErrors.Add(1)
		r.recordError(db, err)
		return err
	}
	db.statMu.Lock()
	db.lastErr = ""
	if db.bucketPos != before {
		db.uploads.Add(1)
	}
	db.statMu.Unlock()
	return nil
}

// recordError logs err and keeps it for Stats.
func (r *Replicator) recordError(db *database, err error) {
	r.opts.Logger.Warn("replication failed", "db", db.name, "err", err)
	now := r.opts.Now()
	r.mu.Lock()
	r.lastErr, r.lastErrTime = err.Error(), now
	r.mu.Unlock()
	db.statMu.Lock()
	db.lastErr = err.Error()
	db.statMu.Unlock()
}

// localDatabases lists the databases that have a local LTX directory.
func (r *Replicator) localDatabases() ([]string, error) { return r.layout.LogDatabases() }

// localFile is one file of a database's local LTX log.
type localFile = ferry.LogFile

// localFiles lists database name's local LTX log in TXID order.
func (r *Replicator) localFiles(name string) ([]localFile, error) { return r.layout.ListLog(name) }

// writeBucketPos records the bucket's position in the data directory, so
// the local log keeps every file after it.
func (r *Replicator) writeBucketPos(name string, pos ferry.Pos) error {
	if err := r.layout.WriteBucketPos(name, pos); err != nil {
		return err
	}
	db := r.get(name)
	db.statMu.Lock()
	db.stored = pos
	db.statMu.Unlock()
	return nil
}

// readBucketPos reads the position writeBucketPos recorded, or the zero
// Pos if there is none or it cannot be parsed.
func (r *Replicator) readBucketPos(name string) ferry.Pos {
	pos, err := r.layout.ReadBucketPos(name)
	if err != nil {
		return ferry.Pos{}
	}
	return pos
}
