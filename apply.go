package ferry

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// ApplyLTX applies one LTX file read from r to database name, creating the
// database if it does not exist. The file is checked completely (format,
// file checksum, TXID continuity, and pre- and post-apply checksums against
// the database) before anything changes. It is then written to the
// database file and kept in the local log, the kernel's cache of the file
// is dropped, and SQLite's own caches are invalidated so that connections
// see the new content at their next transaction. A WAL-mode database that
// connections keep open takes the file through its WAL instead (see
// applyViaWAL). Waits for connections are bounded: when they hold the
// database too long, the error wraps ErrDatabaseBusy and nothing changed.
func (s *Store) ApplyLTX(ctx context.Context, name string, r io.Reader) (Pos, error) {
	if err := ValidateName(name); err != nil {
		return Pos{}, err
	}
	pos, err := s.applyLocking(ctx, name, func(d *DB) (Pos, error) { return d.applyLocked(ctx, r) }, r)
	if err != nil {
		return Pos{}, fmt.Errorf("apply LTX to %q: %w", name, err)
	}
	return pos, nil
}

// How long an apply waits for SQLite's locks on a database. A WAL-mode
// connection holds its shared lock for as long as it is open, so a
// WAL-mode database that is still held after a short wait takes the change
// set through its WAL; other databases are held only for the length of a
// transaction.
const (
	applyLockWait    = 5 * time.Second
	applyLockWaitWAL = time.Millisecond
)

// applyLocking runs apply on database name, creating it if needed, while
// SQLite's locks keep every connection out, and then makes connections
// see the new content: the kernel's caches are dropped and, in WAL mode,
// the WAL index is reset. Listeners are told of the new position. When
// connections keep a WAL-mode database and viaWAL is not nil, the LTX file
// read from viaWAL is appended to the WAL instead of running apply.
func (s *Store) applyLocking(ctx context.Context, name string, apply func(d *DB) (Pos, error), viaWAL io.Reader) (Pos, error) {
	d, err := s.dbForApply(name)
	if err != nil {
		return Pos{}, err
	}
	s.mu.Lock()
	locker := s.locker
	s.mu.Unlock()
	if locker != nil {
		d.mu.Lock()
		walApply := viaWAL != nil && d.walMode && d.state == stateDatabase
		d.mu.Unlock()
		wait := applyLockWait
		if walApply {
			wait = applyLockWaitWAL
		}
		lctx, cancel := context.WithTimeout(ctx, wait)
		unlock, err := locker.LockDatabase(lctx, name)
		cancel()
		switch {
		case err == nil:
			defer unlock()
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return Pos{}, fmt.Errorf("lock: %w", err)
		case walApply:
			pos, err := s.applyViaWAL(ctx, d, viaWAL)
			if err != nil {
				return Pos{}, err
			}
			s.notify(name, pos)
			return pos, nil
		default:
			return Pos{}, fmt.Errorf("%w: connections held it for %s; try again later", ErrDatabaseBusy, wait)
		}
	}
	d.mu.Lock()
	pos, err := apply(d)
	walMode, pageN := d.walMode, d.pageN
	d.mu.Unlock()
	if err != nil {
		return Pos{}, err
	}
	s.invalidate(name)
	if walMode {
		// Connections map the WAL index and write their read marks into
		// it: have the kernel write those back first, so that they do not
		// overwrite the new header, then drop its copy.
		s.invalidate(name + "-shm")
		if err := d.resetSHM(pageN); err != nil {
			return Pos{}, err
		}
		s.invalidate(name + "-shm")
	}
	s.notify(name, pos)
	return pos, nil
}

// dbForApply returns database name, creating an empty one if needed.
func (s *Store) dbForApply(name string) (*DB, error) {
	path := s.layout.DBPath(name)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		// A restore on open may be fetching the same database: it must
		// not move its file over the one created here, which the store
		// would go on reading while applications write the other. Both
		// take restoreMu, and the store takes the file up before it is
		// released.
		s.restoreMu.Lock()
		defer s.restoreMu.Unlock()
		if err := createIfMissing(path); err != nil {
			return nil, err
		}
	}
	d, err := s.lookupDB(name)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("%q exists and is not a database", name)
	}
	return d, nil
}

// createIfMissing creates an empty file at path, and its directory,
// unless the file exists.
func createIfMissing(path string) error {
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return f.Close()
}

func (d *DB) applyLocked(ctx context.Context, r io.Reader) (Pos, error) {
	c, err := d.checkLTX(ctx, r)
	if err != nil {
		return Pos{}, err
	}
	defer c.close()

	// Pass 2: write the pages.
	if err := d.foldWAL(); err != nil {
		return Pos{}, err
	}
	dec, err := c.decoder()
	if err != nil {
		return Pos{}, err
	}
	hdr := c.hdr
	data := make([]byte, hdr.PageSize)
	walMode := d.walMode
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return Pos{}, err
		}
		if _, err := d.file.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return Pos{}, d.fail(fmt.Errorf("write page %d: %w", ph.Pgno, err))
		}
		if ph.Pgno == 1 {
			walMode = dbHeader(data).walMode()
		}
	}
	if err := d.file.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return Pos{}, d.fail(fmt.Errorf("truncate database: %w", err))
	}
	if err := d.file.Sync(); err != nil {
		return Pos{}, d.fail(fmt.Errorf("sync database: %w", err))
	}
	return d.logAppliedLocked(c, walMode)
}

// checkedLTX is an LTX file that checkLTX found fit to apply, copied to a
// temporary file in the database's LTX directory.
type checkedLTX struct {
	tmp     *os.File
	hdr     ltx.Header
	sums    []ltx.Checksum // page checksums after applying it
	sum     ltx.Checksum
	post    ltx.Checksum
	rewrite bool // it replaces the database (a snapshot, a new page size)
	// leavesWAL is set when it changes page 1 so that the database is no
	// longer in WAL mode.
	leavesWAL bool
}

func (c *checkedLTX) close() {
	c.tmp.Close()
	_ = os.Remove(c.tmp.Name())
}

// decoder reads the copied file again from its first page.
func (c *checkedLTX) decoder() (*ltx.Decoder, error) {
	if _, err := c.tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind LTX copy: %w", err)
	}
	dec := ltx.NewDecoder(bufio.NewReader(c.tmp))
	if err := dec.DecodeHeader(); err != nil {
		return nil, err
	}
	return dec, nil
}

// checkLTX copies the LTX file read from r aside and checks it completely
// against the database: format, file checksum, TXID continuity, and the
// pre- and post-apply checksums. Nothing of the database changes.
func (d *DB) checkLTX(ctx context.Context, r io.Reader) (*checkedLTX, error) {
	if d.state == statePlain {
		return nil, errors.New("file is not a database")
	}
	if d.state == stateQuarantined {
		return nil, fmt.Errorf("database is quarantined: %w", d.quarantined)
	}
	if err := d.flushLocked(); err != nil {
		return nil, err
	}
	dir := d.store.layout.LTXDir(d.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create LTX directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "apply-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	c := &checkedLTX{tmp: tmp}
	if err := d.checkLTXInto(ctx, r, c); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (d *DB) checkLTXInto(ctx context.Context, r io.Reader, c *checkedLTX) error {
	dec := ltx.NewDecoder(io.TeeReader(r, c.tmp))
	if err := dec.DecodeHeader(); err != nil {
		return err
	}
	hdr := dec.Header()
	if hdr.NoChecksum() {
		return errors.New("LTX file does not track checksums")
	}
	if hdr.MinTXID != d.pos.TXID+1 {
		return fmt.Errorf("LTX file starts at TXID %d, database is at %d", hdr.MinTXID, d.pos.TXID)
	}
	if !hdr.IsSnapshot() && hdr.PreApplyChecksum != d.pos.PostApplyChecksum {
		return fmt.Errorf("%w: file expects %s, database is at %s", ltx.ErrPreApplyMismatch, hdr.PreApplyChecksum, d.pos.PostApplyChecksum)
	}
	rewrite := hdr.IsSnapshot() || hdr.PageSize != d.pageSize
	sums := make([]ltx.Checksum, hdr.Commit)
	var sum ltx.Checksum
	if !rewrite {
		copy(sums, d.sums)
		for i := uint32(len(d.sums)); i < hdr.Commit; i++ {
			// New pages not in the file would be zero.
			if i+1 != ltx.LockPgno(hdr.PageSize) {
				sums[i] = ltx.ChecksumPage(i+1, make([]byte, hdr.PageSize))
			}
		}
		for _, pc := range sums {
			sum ^= pc
		}
	}
	data := make([]byte, hdr.PageSize)
	seen := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if ph.Pgno == 1 && !dbHeader(data).walMode() {
			c.leavesWAL = true
		}
		pc := ltx.ChecksumPage(ph.Pgno, data)
		sum ^= sums[ph.Pgno-1] ^ pc
		sums[ph.Pgno-1] = pc
		seen++
	}
	if err := dec.Close(); err != nil {
		return err
	}
	if rewrite && seen != int(hdr.Commit)-lockPageCount(hdr.PageSize, hdr.Commit) {
		return fmt.Errorf("LTX file changes the page size but does not hold every page")
	}
	post := dec.Trailer().PostApplyChecksum
	if ltx.ChecksumFlag|sum != post {
		return fmt.Errorf("%w: file says %s, applying it gives %s", ltx.ErrPostApplyMismatch, post, ltx.ChecksumFlag|sum)
	}
	c.hdr, c.sums, c.sum, c.post, c.rewrite = hdr, sums, sum, post, rewrite
	return nil
}

// logAppliedLocked adds an LTX file whose pages are now in the database to
// the local log and moves the position to its end.
func (d *DB) logAppliedLocked(c *checkedLTX, walMode bool) (Pos, error) {
	hdr := c.hdr
	if err := c.tmp.Sync(); err != nil {
		return Pos{}, d.fail(err)
	}
	dir := d.store.layout.LTXDir(d.name)
	if err := os.Rename(c.tmp.Name(), d.store.layout.LTXPath(d.name, hdr.MinTXID, hdr.MaxTXID)); err != nil {
		return Pos{}, d.fail(fmt.Errorf("add to log: %w", err))
	}
	if err := syncDir(dir); err != nil {
		return Pos{}, d.fail(err)
	}
	d.state = stateDatabase
	d.sums, d.sum = c.sums, c.sum
	d.pageSize, d.pageN = hdr.PageSize, hdr.Commit
	d.pos = Pos{TXID: hdr.MaxTXID, PostApplyChecksum: c.post}
	d.lastHdr = hdr
	d.walMode = walMode
	if err := d.writePosFile(d.pos); err != nil {
		return Pos{}, d.fail(err)
	}
	if err := d.recordAppliedLocked(d.pos); err != nil {
		return Pos{}, d.fail(err)
	}
	return d.pos, nil
}

// lockPageCount is 1 if the lock page is within the first commit pages.
func lockPageCount(pageSize, commit uint32) int {
	if ltx.LockPgno(pageSize) <= commit {
		return 1
	}
	return 0
}

// foldWAL copies the committed frames of the WAL into the database file
// and empties the WAL, so that pages written from a change set are not
// hidden by older versions in the WAL.
func (d *DB) foldWAL() error {
	if !d.wal.hdrOK || len(d.wal.index) == 0 {
		return nil
	}
	pgnos := make([]uint32, 0, len(d.wal.index))
	for pgno := range d.wal.index {
		pgnos = append(pgnos, pgno)
	}
	pages, err := d.readLogicalPages(pgnos, d.wal.hdr.pageSize)
	if err != nil {
		return err
	}
	for _, p := range pages {
		if _, err := d.file.WriteAt(p.data, int64(p.pgno-1)*int64(d.wal.hdr.pageSize)); err != nil {
			return fmt.Errorf("checkpoint page %d: %w", p.pgno, err)
		}
	}
	if err := d.file.Truncate(int64(d.wal.lastCommit) * int64(d.wal.hdr.pageSize)); err != nil {
		return fmt.Errorf("checkpoint: truncate database: %w", err)
	}
	if err := d.file.Sync(); err != nil {
		return fmt.Errorf("checkpoint: sync database: %w", err)
	}
	if err := os.Truncate(d.store.layout.DBPath(d.name)+"-wal", 0); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("checkpoint: empty WAL: %w", err)
	}
	d.wal.reset()
	d.store.invalidate(d.name + "-wal")
	return nil
}

// The WAL-index header, as SQLite lays it out at the start of the -shm file
// (two copies, native byte order), and the checkpoint info after it.
const (
	shmHeaderSize   = 48
	shmIChange      = 8
	shmIsInit       = 12
	shmMxFrame      = 16
	shmNPage        = 20
	shmSalt1        = 32
	shmCksum        = 40
	shmNBackfill    = 2 * shmHeaderSize
	shmMinSize      = shmNBackfill + 4
	shmHeaderCksumN = 40
)

// resetSHM rewrites the WAL-index header so that every connection sees that
// the database changed: a new change count, an empty WAL, the new size, and
// new salts so that the next writer starts a fresh WAL.
func (d *DB) resetSHM(pageN uint32) error {
	path := d.store.layout.DBPath(d.name) + "-shm"
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("open shm: %w", err)
	}
	defer f.Close()
	b := make([]byte, shmMinSize)
	if n, _ := f.ReadAt(b, 0); n < shmMinSize {
		return nil // not initialized yet: the first connection builds it
	}
	h := b[:shmHeaderSize]
	le := binary.LittleEndian
	le.PutUint32(h[shmIChange:], le.Uint32(h[shmIChange:])+1)
	h[shmIsInit] = 1
	le.PutUint32(h[shmMxFrame:], 0)
	le.PutUint32(h[shmNPage:], pageN)
	le.PutUint32(h[shmSalt1:], le.Uint32(h[shmSalt1:])+1)
	c := walChecksum(false, [2]uint32{}, h[:shmHeaderCksumN]) // native order: little-endian hosts
	le.PutUint32(h[shmCksum:], c[0])
	le.PutUint32(h[shmCksum+4:], c[1])
	copy(b[shmHeaderSize:], h)
	le.PutUint32(b[shmNBackfill:], 0)
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write shm: %w", err)
	}
	return nil
}
