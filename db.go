package ferry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"

	"github.com/ferrydb/ferry/ltx"
)

// dbState is what the store knows a file to be.
type dbState int

const (
	// stateCandidate is an empty file that becomes a database when its
	// first page is written with the SQLite header.
	stateCandidate dbState = iota
	stateDatabase
	// statePlain is a candidate whose first write was not a database page.
	statePlain
	// stateQuarantined is a database that could not be opened: it is left
	// untouched and refused for writing (see quarantine.go).
	stateQuarantined
)

// DB is one database of a Store: its backing file, its position, the
// checksum of every page and the state of the transaction in progress. The
// FUSE layer reports each write, truncate, sync and unlink of the database
// and its journal files through the DB's methods, which turn committed
// transactions into LTX files.
type DB struct {
	store  *Store
	name   string
	logger *slog.Logger
	// synchronous is set for a database whose commits wait until they
	// are durable off this node (see WaitSynchronous).
	synchronous bool

	mu    sync.Mutex
	state dbState
	file  *os.File // the backing database file, read and written by the store

	pos      Pos
	lastHdr  ltx.Header // header of the newest LTX file in the log
	pageSize uint32
	pageN    uint32
	sums     []ltx.Checksum // page checksums, index pgno-1; zero for the lock page
	sum      ltx.Checksum   // XOR of sums, without ChecksumFlag
	walMode  bool           // the logical header says WAL mode

	// Rollback-journal transaction in progress.
	journalActive bool
	dirty         map[uint32]struct{}
	dbSynced      bool

	wal    walState
	follow walFollow

	// Change sets captured but not yet in the LTX log, and the pending
	// log that holds the durable ones among them.
	queue []queued
	// recent keeps the last change sets flushed, one by one, while
	// someone watches the database, so that a holder's stream can send
	// each on its own even after the flusher merged them into one file.
	recent      []queued
	recentBytes int
	pending     *os.File
	pendingSize int64
	posFile     *os.File

	// foreign is set when a write that was not a checkpoint changed the
	// file of a WAL-mode database (see CheckDBWrite).
	foreign bool

	// broken is set when a transaction could not be captured; writes are
	// refused until a repair brings the log level with the database again
	// (see repair.go).
	broken error
	repair repairSchedule

	// quarantined is why a database in stateQuarantined could not be
	// opened.
	quarantined error
}

func newDB(s *Store, name string) *DB {
	return &DB{
		store:       s,
		name:        name,
		logger:      s.logger.With("db", name),
		dirty:       make(map[uint32]struct{}),
		synchronous: s.IsSynchronous(name),
	}
}

// Name returns the database's name in the mount.
func (d *DB) Name() string { return d.name }

// Pos returns the database's current position, including every
// transaction committed so far.
func (d *DB) Pos() Pos {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		d.logger.Error("capture WAL commits", "err", err)
	}
	return d.pos
}

func (d *DB) isDatabase() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == stateDatabase
}

func (d *DB) isPlain() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == statePlain
}

// IsPlain reports whether the file turned out not to be a database; its
// companions are then plain files too.
func (d *DB) IsPlain() bool { return d.isPlain() }

// IsDatabase reports whether the file is a database, rather than an empty
// file that may still become one or a plain file.
func (d *DB) IsDatabase() bool { return d.isDatabase() }

// CheckRemove returns an error wrapping ErrReadOnly when this node may not
// delete the database now. Unlike CheckWrite it lets a database whose
// capture failed be deleted: deleting it ends the divergence, and one
// created again under its name starts from a change set of every page.
//
// A quarantined database may be deleted too: that is how an operator
// clears it without a restart.
func (d *DB) CheckRemove(ctx context.Context) error {
	return d.store.checkWrite(ctx, d.name)
}

// CheckRename returns an error when renaming the database's file now
// would lose something: a rollback-journal transaction is in progress, or
// the database has a WAL, whose frames stay under the old name.
func (d *DB) CheckRename() error {
	d.mu.Lock()
	active, bypassed := d.journalActive, d.follow.handles > 0
	d.mu.Unlock()
	if active {
		return errors.New("a transaction is in progress")
	}
	if bypassed {
		return errors.New("its WAL is open")
	}
	if _, err := os.Stat(d.store.layout.DBPath(d.name) + "-wal"); err == nil {
		return errors.New("it has a WAL")
	}
	return nil
}

// CheckWrite returns an error wrapping ErrReadOnly when this node may not
// write the database now.
func (d *DB) CheckWrite(ctx context.Context) error {
	if err := d.quarantineError(); err != nil {
		return err
	}
	d.mu.Lock()
	broken := d.broken
	d.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("%w: %w", ErrReadOnly, broken)
	}
	return d.store.checkWrite(ctx, d.name)
}

// WriteRefused returns an error wrapping ErrReadOnly when a write to the
// database here would be refused now: another node holds its lease,
// placement bars this node, or its capture failed. Unlike CheckWrite it
// never acquires the lease, so an application's read can ask it.
func (d *DB) WriteRefused() error {
	d.mu.Lock()
	broken := d.broken
	d.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("%w: %w", ErrReadOnly, broken)
	}
	switch d.store.ProbeLease(d.name) {
	case LeaseElsewhere:
		return fmt.Errorf("%q: another node holds the lease: %w", d.name, ErrReadOnly)
	case LeaseBarred:
		return fmt.Errorf("%q: this node may not hold the lease: %w", d.name, ErrReadOnly)
	}
	return nil
}

// WritableNow reports, without acquiring anything, whether this node may
// write the database at this moment.
func (d *DB) WritableNow() bool {
	d.mu.Lock()
	broken := d.broken
	d.mu.Unlock()
	return broken == nil && d.store.ProbeLease(d.name) == LeaseMine
}

// WALBypassAllowed reports whether a WAL handle opened now may let its
// writes bypass the store: the write guard says for how long this node may
// write, so that the store can fence writers when that time ends.
func (d *DB) WALBypassAllowed() bool {
	d.mu.Lock()
	refused := d.broken != nil || d.follow.unfence != nil || d.state == stateQuarantined
	d.mu.Unlock()
	if refused {
		return false
	}
	_, ok := d.store.writeTerm(d.name)
	return ok
}

// openFile opens the backing database file for the store's own reads.
func (d *DB) openFile() error {
	f, err := os.OpenFile(d.store.layout.DBPath(d.name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open database file: %w", err)
	}
	d.file = f
	return nil
}

// openCandidate prepares state for an empty file that may become a
// database.
func (d *DB) openCandidate() error {
	d.state = stateCandidate
	if err := d.openFile(); err != nil {
		return err
	}
	// An empty file may still have history, e.g. a database truncated to
	// nothing; pick it up so TXIDs continue.
	if err := d.loadLog(); err != nil {
		return err
	}
	if !d.pos.IsZero() {
		d.state = stateDatabase
	}
	return nil
}

// close syncs outstanding change sets and saves the checksum index.
func (d *DB) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if err := d.catchUpWALLocked(); err != nil {
		errs = append(errs, err)
	}
	d.unwatchWALLocked()
	d.closeWALReaderLocked()
	if err := d.captureWritesOutsideLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := d.syncLocked(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case d.state != stateDatabase || d.pos.IsZero():
	case len(d.dirty) > 0 || d.broken != nil || d.foreign:
		// The file holds writes the log lacks: the next start must read
		// every page, and the recovery brings the log level with them.
		d.logger.Warn("database has writes the log lacks; not saving the checksum index", "pages", len(d.dirty))
	default:
		if err := d.saveIndex(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.file != nil {
		errs = append(errs, d.file.Close())
		d.file = nil
	}
	if d.posFile != nil {
		errs = append(errs, d.posFile.Close())
		d.posFile = nil
	}
	if d.pending != nil {
		errs = append(errs, d.pending.Close())
		d.pending = nil
	}
	return errors.Join(errs...)
}

// recordDeleted leaves the position file behind when the database file was
// deleted through the mount, even if no commit wrote it yet (a database
// just restored from the bucket): RestoreMissing takes it as the sign that
// the database was deleted here and must not come back from the bucket.
func (d *DB) recordDeleted() {
	d.mu.Lock()
	pos := d.pos
	d.mu.Unlock()
	if pos.IsZero() {
		return
	}
	if err := os.MkdirAll(d.store.layout.MetaDir(d.name), 0o755); err != nil {
		d.logger.Error("record deletion", "err", err)
		return
	}
	if err := os.WriteFile(d.store.layout.PosPath(d.name), []byte(pos.String()+"\n"), 0o644); err != nil {
		d.logger.Error("record deletion", "err", err)
	}
}

// DBWritten records that the mount wrote len bytes at off to the database
// file. In rollback-journal modes those pages belong to the transaction in
// progress; in WAL mode the writes are checkpoints, which do not change the
// database's content (see CheckDBWrite). It reports whether the write
// changed pages outside any transaction: a copy into a new file, a tool
// such as dd, or SQLite with journal_mode OFF or MEMORY. The handle that
// made such writes must call CaptureWritesOutside when it is flushed.
func (d *DB) DBWritten(off int64, data []byte) (outside bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == stateCandidate {
		if off == 0 && len(data) >= sqliteHeaderSize && dbHeader(data).valid() {
			d.state = stateDatabase
			d.logger.Info("new database")
		} else {
			d.state = statePlain
			return false
		}
	}
	if d.state != stateDatabase {
		return false
	}
	if d.walMode && !d.journalActive {
		return false
	}
	ps := d.writePageSize(off, data)
	if ps == 0 {
		return false
	}
	for p := off / int64(ps); p*int64(ps) < off+int64(len(data)); p++ {
		d.dirty[uint32(p+1)] = struct{}{}
	}
	return !d.journalActive
}

// writePageSize is the page size to map a write to pages: the page size
// the write itself declares when it carries page 1, else the current one.
func (d *DB) writePageSize(off int64, data []byte) uint32 {
	if off == 0 && len(data) >= sqliteHeaderSize && dbHeader(data).valid() {
		return dbHeader(data).pageSize()
	}
	if d.pageSize != 0 {
		return d.pageSize
	}
	hdr, err := d.readHeader()
	if err != nil {
		return 0
	}
	return hdr.pageSize()
}

// DBTruncated records a truncate of the database file.
func (d *DB) DBTruncated(size int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == stateDatabase && (!d.walMode || d.journalActive) {
		// The commit reads the new size from the file; a shrink marks page
		// 1 so that the transaction is not mistaken for a no-op.
		d.dirty[1] = struct{}{}
	}
}

// DBSynced records an fsync of the database file. In journal modes without
// a journal file (OFF, MEMORY) it is the only sign of a commit.
func (d *DB) DBSynced() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateDatabase {
		return nil
	}
	d.dbSynced = true
	if !d.journalActive && !d.walMode && len(d.dirty) > 0 {
		if err := d.commitJournalLocked(); err != nil {
			return err
		}
	}
	return d.persistLocked()
}

// JournalWritten records a write to the rollback journal. A header written
// at offset 0 starts a transaction; zeroing it commits (PERSIST mode, and
// every mode under locking_mode=EXCLUSIVE).
func (d *DB) JournalWritten(off int64, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == statePlain || off != 0 || len(data) < 8 {
		return nil
	}
	switch {
	case string(data[:8]) == string(journalMagic):
		d.journalActive = true
	case isZero(data[:8]) && d.journalActive:
		return d.commitJournalLocked()
	}
	return nil
}

// JournalTruncated records a truncate of the journal; to zero it commits
// (TRUNCATE mode).
func (d *DB) JournalTruncated(size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if size == 0 && d.journalActive {
		return d.commitJournalLocked()
	}
	return nil
}

// JournalRemoved records the journal's deletion, the commit in DELETE mode.
func (d *DB) JournalRemoved() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.journalActive {
		return d.commitJournalLocked()
	}
	return nil
}

// JournalMovedIn records that the file at path was moved to the journal's
// name. One that starts with a journal header is hot: SQLite rolls the
// database back from it and then removes, truncates or zeroes it, which
// commits the rollback like any transaction.
func (d *DB) JournalMovedIn(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open moved journal: %w", err)
	}
	defer f.Close()
	b := make([]byte, len(journalMagic))
	if n, _ := f.ReadAt(b, 0); n < len(b) || string(b) != string(journalMagic) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == stateDatabase {
		d.journalActive = true
	}
	return nil
}

// commitJournalLocked turns the pages written during a rollback-journal
// transaction into one change set.
func (d *DB) commitJournalLocked() error {
	d.journalActive = false
	dirty := d.dirty
	d.dirty = make(map[uint32]struct{})
	synced := d.dbSynced
	d.dbSynced = false
	if d.state != stateDatabase || len(dirty) == 0 {
		return nil
	}

	hdr, err := d.readHeader()
	if err != nil {
		return d.fail(fmt.Errorf("read header at commit: %w", err))
	}
	pageSize := hdr.pageSize()
	valid := hdr.valid() && ltx.IsValidPageSize(pageSize)
	if !valid {
		// A transaction may leave page 1 without a valid header (SQLite's
		// own tests do so on purpose, and a reset repairs it). The bytes
		// are still the database's content, so capture them at the page
		// size the database had.
		if d.pageSize == 0 {
			return d.fail(errors.New("database header is not valid at its first commit"))
		}
		d.logger.Warn("database header is not valid at commit; capturing at the last page size", "page_size", d.pageSize)
		pageSize = d.pageSize
	}
	fi, err := d.file.Stat()
	if err != nil {
		return d.fail(fmt.Errorf("stat database: %w", err))
	}
	commit, ok := hdr.pageCount()
	if !valid || !ok {
		commit = uint32(fi.Size() / int64(pageSize))
	}

	full := d.pos.TXID == 0 || pageSize != d.pageSize
	var pgnos []uint32
	if full {
		pgnos = allPages(pageSize, commit)
	} else {
		for p := range dirty {
			if p <= commit {
				pgnos = append(pgnos, p)
			}
		}
		// Pages past the old end are part of the change even if SQLite
		// extended the file without writing them.
		for p := d.pageN + 1; p <= commit; p++ {
			if _, ok := dirty[p]; !ok {
				pgnos = append(pgnos, p)
			}
		}
		sort.Slice(pgnos, func(i, j int) bool { return pgnos[i] < pgnos[j] })
	}

	read, err := d.readLogicalPages(pgnos, pageSize)
	if err != nil {
		return d.fail(err)
	}
	pages := read[:0]
	for _, p := range read {
		if !full && p.pgno <= d.pageN && ltx.ChecksumPage(p.pgno, p.data) == d.sums[p.pgno-1] {
			continue // unchanged: rewritten with the same bytes, or rolled back
		}
		pages = append(pages, p)
	}
	if !full && len(pages) == 0 && commit == d.pageN {
		return nil // a rollback, or a commit that changed nothing
	}
	return d.writeChangeSet(changeSet{pageSize: pageSize, commit: commit, pages: pages, full: full}, synced)
}

// fail logs err: the change set could not be made, which makes the log
// diverge from the database, so writes are refused until the background
// repair brings the log level with the database (see repair.go).
func (d *DB) fail(err error) error {
	d.logger.Error("cannot capture transaction", "err", err)
	err = fmt.Errorf("database %q: %w", d.name, err)
	if d.broken == nil {
		d.broken = err
		d.scheduleRepairLocked()
	}
	return err
}

// readHeader reads the database file's header.
func (d *DB) readHeader() (dbHeader, error) {
	b := make([]byte, sqliteHeaderSize)
	n, err := d.file.ReadAt(b, 0)
	if n < sqliteHeaderSize {
		if err == nil {
			err = errors.New("short read")
		}
		return nil, err
	}
	return dbHeader(b), nil
}

// allPages lists pages 1 to commit.
func allPages(pageSize, commit uint32) []uint32 {
	pgnos := make([]uint32, 0, commit)
	for p := uint32(1); p <= commit; p++ {
		pgnos = append(pgnos, p)
	}
	return pgnos
}

// Sync writes every captured change set to the LTX log, durably, and
// tells the listeners.
func (d *DB) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		return err
	}
	return d.flushLocked()
}

// syncLocked writes the queued change sets to the LTX log.
func (d *DB) syncLocked() error { return d.flushLocked() }

// removeIfExists removes path, ignoring a missing file.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
