package ferry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultRetention is how long the local LTX log keeps change sets when
// StoreOptions.Retention is zero.
const DefaultRetention = 10 * time.Minute

// StoreOptions configures a Store.
type StoreOptions struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger

	// Retention is how long a change set stays in the local LTX log after
	// it was written. Zero means DefaultRetention. The newest file of each
	// database is always kept: it records the database's position.
	Retention time.Duration

	// KeepUntilUploaded keeps every LTX file above the position recorded in
	// Layout.BucketPosPath, whatever its age, so nothing is lost while the
	// bucket is unreachable.
	KeepUntilUploaded bool

	// WALPollInterval is how often the store looks for new commits in a
	// WAL that bypasses it (FUSE passthrough) while commits keep coming,
	// and how often it checks that such a WAL's writers may still write.
	// Zero means 10 ms. Where the kernel tells of each write to the WAL,
	// the poll is only a fallback.
	WALPollInterval time.Duration

	// NoWALWatch follows WALs that bypass the store by polling alone,
	// without asking the kernel (inotify) to tell of each write.
	NoWALWatch bool
}

// Invalidator drops what the kernel caches about a file in the mount. The
// FUSE layer implements it; the store calls it whenever it changes a file
// underneath the applications (applying a change set, restoring, recovering).
type Invalidator interface {
	// InvalidateFile drops the cached data and attributes of the file at
	// relative path name (slash-separated) in the mount.
	InvalidateFile(name string)
}

// Store is the set of databases kept under a data directory. It captures
// every committed transaction of every database as an LTX file, keeps each
// database's durable position and rolling checksum, and applies change sets
// that arrive from elsewhere.
type Store struct {
	layout Layout
	opts   StoreOptions
	logger *slog.Logger

	guard       WriteGuard
	restorer    Restorer
	listeners   []CommitListener
	commits     commitCounters
	capturers   []CaptureListener
	leaseView   LeaseView
	invalidator Invalidator
	locker      DatabaseLocker
	// durable and synchronous make some databases synchronous; set
	// before Open, read without locking.
	durable     DurableWaiter
	synchronous func(name string) bool
	walWatch    *walWatcher // nil where WALs are followed by polling alone
	subs        subscriptions

	mu        sync.Mutex
	restoreMu sync.Mutex
	dbs       map[string]*DB
	opened    bool

	syncKick chan struct{}
	cancel   context.CancelFunc
	runCtx   context.Context // ends at Close
	wg       sync.WaitGroup
}

var _ Applier = (*Store)(nil)

// NewStore returns a store over layout. Configure it with the Set and Add
// methods, then call Open.
func NewStore(layout Layout, opts StoreOptions) *Store {
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		layout: layout,
		opts:   opts,
		logger: logger,
		dbs:    make(map[string]*DB),

		syncKick: make(chan struct{}, 1),
	}
}

// Layout returns the layout of the store's data directory.
func (s *Store) Layout() Layout { return s.layout }

// Logger returns the store's logger.
func (s *Store) Logger() *slog.Logger { return s.logger }

// SetWriteGuard sets the guard asked before every write. With none, every
// database is writable under epoch 0. Call it before Open.
func (s *Store) SetWriteGuard(g WriteGuard) { s.guard = g }

// SetRestorer sets what fetches a database that is missing locally. With
// none, opening a missing database creates a new one. Call it before Open.
func (s *Store) SetRestorer(r Restorer) { s.restorer = r }

// Restorer returns the restorer set with SetRestorer, or nil.
func (s *Store) Restorer() Restorer { return s.restorer }

// AddCommitListener adds a listener told of every change set that becomes
// durable in the local log. Call it before Open.
func (s *Store) AddCommitListener(l CommitListener) { s.listeners = append(s.listeners, l) }

// AddCaptureListener adds a listener told of every transaction as soon as
// it is captured. Call it before Open.
func (s *Store) AddCaptureListener(l CaptureListener) { s.capturers = append(s.capturers, l) }

// SetLeaseView sets what tells who holds each database's lease. Call it
// before Open.
func (s *Store) SetLeaseView(v LeaseView) { s.leaseView = v }

// LeaseView returns the view set with SetLeaseView, or nil.
func (s *Store) LeaseView() LeaseView { return s.leaseView }

// SetDatabaseLocker sets what takes SQLite's locks on a database while the
// store applies a change set to it. The FUSE layer sets it.
func (s *Store) SetDatabaseLocker(l DatabaseLocker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locker = l
}

// SetInvalidator sets what drops the kernel's caches of a file when the
// store changes it underneath the mount. The FUSE layer sets it.
func (s *Store) SetInvalidator(inv Invalidator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidator = inv
}

func (s *Store) invalidate(name string) {
	s.mu.Lock()
	inv := s.invalidator
	s.mu.Unlock()
	if inv != nil {
		inv.InvalidateFile(name)
	}
}

// Open creates the data directory if needed, finds every database under it
// and recovers each one to a state that matches its log (see DB.recover).
func (s *Store) Open(ctx context.Context) error {
	for _, dir := range []string{s.layout.TreeDir(), filepath.Join(s.layout.Dir, "meta")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
	}
	names, err := s.scanTree()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A database that cannot be opened is quarantined rather than
		// keeping every other one from starting.
		db, err := s.openDB(ctx, name)
		if err != nil {
			return fmt.Errorf("open database %q: %w", name, err)
		}
		s.mu.Lock()
		s.dbs[name] = db
		s.mu.Unlock()
		// Recovery may have added change sets (from the pending log, the
		// WAL or a repair) that no listener has heard of, and the
		// replicator starts before Open: without this, they would wait in
		// the local log for the next commit to be uploaded.
		s.notify(name, db.Pos())
	}
	s.mu.Lock()
	s.opened = true
	s.mu.Unlock()

	if !s.opts.NoWALWatch {
		s.walWatch = newWALWatcher(s.logger)
	}
	if s.walWatch != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.walWatch.run()
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.runCtx = cancel, ctx
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.retentionLoop(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.walPollLoop(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.syncLoop(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.repairLoop(ctx)
	}()
	return nil
}

// scanTree returns the names of the files under the tree that start with
// the SQLite header.
func (s *Store) scanTree() ([]string, error) {
	root := s.layout.TreeDir()
	var names []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if ValidateName(name) != nil {
			s.logger.Warn("skipping file with an invalid name", "path", path)
			return nil
		}
		ok, err := hasSQLiteHeader(path)
		if err != nil {
			return err
		}
		if ok {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	sort.Strings(names)
	return names, nil
}

// Close stops background work and records each database's checksum index
// so that the next Open does not have to read every page.
func (s *Store) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	if s.walWatch != nil {
		s.walWatch.close()
	}
	s.wg.Wait()
	s.mu.Lock()
	dbs := make([]*DB, 0, len(s.dbs))
	for _, db := range s.dbs {
		dbs = append(dbs, db)
	}
	s.mu.Unlock()
	var errs []error
	for _, db := range dbs {
		if err := db.close(); err != nil {
			errs = append(errs, fmt.Errorf("close database %q: %w", db.name, err))
		}
	}
	return errors.Join(errs...)
}

// DBs returns the names of the databases in the store, sorted.
func (s *Store) DBs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.dbs))
	for name, db := range s.dbs {
		if db.isDatabase() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Candidates lists the empty files the store has seen that may still
// become databases. One may stand in for a database another node has just
// created, opened here before this node heard of it: following it from
// the bucket turns it into that database.
func (s *Store) Candidates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, db := range s.dbs {
		db.mu.Lock()
		if db.state == stateCandidate {
			names = append(names, name)
		}
		db.mu.Unlock()
	}
	sort.Strings(names)
	return names
}

// DB returns the database called name, or nil.
func (s *Store) DB(name string) *DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.dbs[name]
	if db == nil || !db.isDatabase() {
		return nil
	}
	return db
}

// Pos returns the position of database name. It returns an error wrapping
// ErrDatabaseNotFound if there is no such database.
func (s *Store) Pos(name string) (Pos, error) {
	db := s.DB(name)
	if db == nil {
		return Pos{}, fmt.Errorf("%q: %w", name, ErrDatabaseNotFound)
	}
	return db.Pos(), nil
}

// LocalPos returns the position of database name, or the zero Pos when it
// does not exist on this node.
func (s *Store) LocalPos(name string) (Pos, error) {
	if err := ValidateName(name); err != nil {
		return Pos{}, err
	}
	db := s.DB(name)
	if db == nil {
		return Pos{}, nil
	}
	return db.Pos(), nil
}

// FileRole is what a file in the mount is to the store.
type FileRole int

// File roles.
const (
	RolePlain   FileRole = iota // not part of a database; passed through
	RoleDB                      // the main database file
	RoleJournal                 // the rollback journal (-journal)
	RoleWAL                     // the write-ahead log (-wal)
	RoleSHM                     // the WAL index (-shm)
)

// String names the role for logs.
func (r FileRole) String() string {
	switch r {
	case RoleDB:
		return "database"
	case RoleJournal:
		return "journal"
	case RoleWAL:
		return "wal"
	case RoleSHM:
		return "shm"
	default:
		return "plain"
	}
}

var companionSuffixes = []struct {
	suffix string
	role   FileRole
}{
	{"-journal", RoleJournal},
	{"-wal", RoleWAL},
	{"-shm", RoleSHM},
}

// Classify tells what the file at relative path name is. A file is a
// database when it starts with the SQLite header, or when it is empty (a
// database being created: it stays one only if its first page carries the
// header). -journal, -wal and -shm files are companions of the database
// they are named after, if that is a database. Everything else is plain.
// The returned DB is nil for plain files.
func (s *Store) Classify(name string) (FileRole, *DB, error) {
	if err := ValidateName(name); err != nil {
		return RolePlain, nil, err
	}
	for _, c := range companionSuffixes {
		if base, ok := strings.CutSuffix(name, c.suffix); ok && base != "" && !strings.HasSuffix(base, "/") {
			db, err := s.lookupDB(base)
			if err != nil {
				return RolePlain, nil, err
			}
			if db != nil {
				return c.role, db, nil
			}
		}
	}
	db, err := s.lookupDB(name)
	if err != nil || db == nil {
		return RolePlain, nil, err
	}
	return RoleDB, db, nil
}

// lookupDB returns the database or database candidate called name, adding
// it when its file qualifies.
func (s *Store) lookupDB(name string) (*DB, error) {
	s.mu.Lock()
	db := s.dbs[name]
	s.mu.Unlock()
	if db != nil {
		if db.isPlain() {
			return nil, nil
		}
		return db, nil
	}

	path := s.layout.DBPath(name)
	// Lstat: a symlink is never a database itself (SQLite opens its
	// target), and following one that points back into the mount would
	// send this lookup through the mount to itself.
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	isDB := false
	if fi.Size() > 0 {
		if isDB, err = hasSQLiteHeader(path); err != nil {
			return nil, err
		}
		if !isDB {
			return nil, nil
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.dbs[name]; db != nil {
		return db, nil
	}
	if isDB {
		// A database that appeared since Open, such as one restored into the
		// tree: recover it like any other, or quarantine it.
		if db, err = s.openDB(context.Background(), name); err != nil {
			return nil, fmt.Errorf("open database %q: %w", name, err)
		}
	} else {
		db = newDB(s, name)
		if err := db.openCandidate(); err != nil {
			return nil, err
		}
	}
	s.dbs[name] = db
	return db, nil
}

// Forget drops the store's state for name after its file was removed
// through the mount.
func (s *Store) Forget(name string) {
	s.mu.Lock()
	db := s.dbs[name]
	delete(s.dbs, name)
	s.mu.Unlock()
	if db != nil {
		_ = db.close()
		db.recordDeleted()
	}
}

// notify tells every listener that name reached pos.
func (s *Store) notify(name string, pos Pos) {
	for _, l := range s.listeners {
		l.Committed(name, pos)
	}
	s.subs.wake(name)
}

// writeTerm asks the write guard, without acquiring anything, whether name
// may be written now and under which epoch. A guard that cannot say for how
// long never lets writes bypass it.
func (s *Store) writeTerm(name string) (epoch uint64, ok bool) {
	if s.guard == nil {
		return 0, true
	}
	t, isTerm := s.guard.(WriteTerm)
	if !isTerm {
		return 0, false
	}
	epoch, _, ok = t.WriteTerm(name)
	return epoch, ok
}

// ProbeLease reports where database name's lease stands, without
// acquiring anything. A guard that cannot say is taken to leave the lease
// free, so that a write still asks it.
func (s *Store) ProbeLease(name string) LeaseState {
	if s.guard == nil {
		return LeaseMine
	}
	if p, ok := s.guard.(LeaseProbe); ok {
		return p.ProbeLease(name)
	}
	if _, ok := s.writeTerm(name); ok {
		return LeaseMine
	}
	return LeaseFree
}

// checkWrite asks the write guard whether name may be written.
func (s *Store) checkWrite(ctx context.Context, name string) error {
	if s.guard == nil {
		return nil
	}
	if _, err := s.guard.CheckWrite(ctx, name); err != nil {
		if errors.Is(err, ErrReadOnly) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return nil
}
