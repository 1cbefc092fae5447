package ferry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// A WAL-mode connection holds a shared lock on its database file for as
// long as it is open, idle or not, so a change set cannot be written into
// the database file while an application keeps a connection open. SQLite's
// own writers do not need that lock either: they append frames to the WAL
// under the WAL write lock and publish them in the WAL index, and each
// reader keeps the snapshot it started with. applyViaWAL applies a change
// set the same way, so a replica keeps following while connections stay
// open; the frames reach the database file at the next checkpoint, or
// when an apply finds the database free and folds the WAL.

// ErrDatabaseBusy is returned by an apply that could not get the locks it
// needs in time because connections hold the database; it changed nothing
// and may be retried.
var ErrDatabaseBusy = errors.New("database is busy")

// applyViaWAL applies the LTX file read from r to WAL-mode database d by
// appending its pages to the WAL as one committed transaction.
func (s *Store) applyViaWAL(ctx context.Context, d *DB, r io.Reader) (Pos, error) {
	s.mu.Lock()
	wl, ok := s.locker.(WALWriterLock)
	s.mu.Unlock()
	if !ok {
		return Pos{}, fmt.Errorf("%w: connections hold it and the store cannot write its WAL", ErrDatabaseBusy)
	}
	shm, unlock, busy, err := wl.LockWALWriter(d.name)
	if err != nil {
		return Pos{}, fmt.Errorf("take WAL write lock: %w", err)
	}
	if busy {
		return Pos{}, fmt.Errorf("%w: a connection holds the WAL write lock", ErrDatabaseBusy)
	}
	defer unlock()
	ih, err := readWALIndexHeader(shm)
	if err != nil {
		return Pos{}, fmt.Errorf("%w: %w", ErrDatabaseBusy, err)
	}
	d.mu.Lock()
	pos, next, pgnos, err := d.appendWALLocked(ctx, r, ih)
	d.mu.Unlock()
	if err != nil {
		return Pos{}, err
	}
	// The frames may lie where the kernel caches an older generation's.
	s.invalidate(d.name + "-wal")
	if err := indexFrames(shm, next.mxFrame-uint32(len(pgnos)), pgnos); err != nil {
		return Pos{}, d.spoilWALIndex(shm, err)
	}
	if err := publishWALIndexHeader(shm, next); err != nil {
		return Pos{}, d.spoilWALIndex(shm, err)
	}
	d.logger.Debug("applied change set through the WAL: connections hold the database", "pos", pos, "frames", len(pgnos))
	return pos, nil
}

// spoilWALIndex handles a WAL index that could not be brought up to date
// after the WAL and the log took a change set: connections would not see
// it, so the index is marked for SQLite to rebuild from the WAL.
func (d *DB) spoilWALIndex(shm *os.File, err error) error {
	if serr := spoilWALIndexHeader(shm); serr != nil {
		d.logger.Error("WAL index lacks an applied change set and cannot be rebuilt", "err", err, "invalidate_err", serr)
	} else {
		d.logger.Error("WAL index lacks an applied change set; connections rebuild it from the WAL", "err", err)
	}
	return fmt.Errorf("update WAL index: %w", err)
}

// appendWALLocked checks the LTX file read from r, appends its pages to
// the WAL after the frames the WAL index ih publishes, adds it to the log
// and moves the position. It returns the WAL-index header that publishes
// the new frames, and the page of each new frame.
func (d *DB) appendWALLocked(ctx context.Context, r io.Reader, ih walIndexHeader) (Pos, walIndexHeader, []uint32, error) {
	if !d.walMode || d.state != stateDatabase {
		return Pos{}, ih, nil, fmt.Errorf("%w: connections hold it and it is not in WAL mode", ErrDatabaseBusy)
	}
	c, err := d.checkLTX(ctx, r)
	if err != nil {
		return Pos{}, ih, nil, err
	}
	defer c.close()
	if c.rewrite || c.leavesWAL {
		return Pos{}, ih, nil, fmt.Errorf("%w: the change set replaces the database or leaves WAL mode, which needs every connection out", ErrDatabaseBusy)
	}
	pageSize := c.hdr.PageSize
	w := &d.wal
	fs := walFrameHeaderSize + int64(pageSize)
	if ih.mxFrame > 0 {
		s1, s2 := ih.salts()
		if ih.pageSize != pageSize || !w.hdrOK || w.hdr.salt1 != s1 || w.hdr.salt2 != s2 ||
			w.commitOff != walHeaderSize+int64(ih.mxFrame)*fs || w.commitCksum != ih.frameCksum || len(w.pending) > 0 {
			return Pos{}, ih, nil, fmt.Errorf("%w: the WAL index does not match the WAL as the store followed it", ErrDatabaseBusy)
		}
	}

	walPath := d.store.layout.DBPath(d.name) + "-wal"
	wal, err := os.OpenFile(walPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return Pos{}, ih, nil, fmt.Errorf("open WAL: %w", err)
	}
	defer wal.Close()

	hdr, cksum, off := w.hdr, w.commitCksum, w.commitOff
	if ih.mxFrame == 0 {
		// Every frame is in the database file: start a new generation,
		// with salts no frame of the old one carries.
		if hdr, err = startWALGeneration(wal, ih, pageSize); err != nil {
			return Pos{}, ih, nil, err
		}
		cksum, off = hdr.cksum, walHeaderSize
	}

	// Write every page of the change set, then the zero pages it implies
	// past the old end; the last frame carries the commit.
	var pgnos []uint32
	var pending []byte
	writeFrame := func(pgno, commit uint32, data []byte) error {
		f := make([]byte, fs)
		binary.BigEndian.PutUint32(f[0:], pgno)
		binary.BigEndian.PutUint32(f[walFrameCommit:], commit)
		binary.BigEndian.PutUint32(f[walFrameSalt:], hdr.salt1)
		binary.BigEndian.PutUint32(f[walFrameSalt+4:], hdr.salt2)
		copy(f[walFrameHeaderSize:], data)
		cksum = walChecksum(hdr.bigEndian, cksum, f[:walFrameCksumN])
		cksum = walChecksum(hdr.bigEndian, cksum, f[walFrameHeaderSize:])
		binary.BigEndian.PutUint32(f[walFrameCksum:], cksum[0])
		binary.BigEndian.PutUint32(f[walFrameCksum+4:], cksum[1])
		if _, err := wal.WriteAt(f, off+int64(len(pgnos))*fs); err != nil {
			return fmt.Errorf("write WAL frame: %w", err)
		}
		pgnos = append(pgnos, pgno)
		return nil
	}
	var pendingPgno uint32
	push := func(pgno uint32, data []byte) error {
		if pending != nil {
			if err := writeFrame(pendingPgno, 0, pending); err != nil {
				return err
			}
		}
		pending, pendingPgno = append(pending[:0], data...), pgno
		return nil
	}
	dec, err := c.decoder()
	if err != nil {
		return Pos{}, ih, nil, err
	}
	data := make([]byte, pageSize)
	seen := make(map[uint32]bool)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return Pos{}, ih, nil, err
		}
		seen[ph.Pgno] = true
		if err := push(ph.Pgno, data); err != nil {
			return Pos{}, ih, nil, d.fail(err)
		}
	}
	commit := c.hdr.Commit
	for p := d.pageN + 1; p <= commit; p++ {
		if !seen[p] && p != ltx.LockPgno(pageSize) {
			if err := push(p, make([]byte, pageSize)); err != nil {
				return Pos{}, ih, nil, d.fail(err)
			}
		}
	}
	if pending == nil {
		// A change set that only shrinks the database: its commit still
		// needs a frame to carry it.
		pages, err := d.readLogicalPages([]uint32{1}, pageSize)
		if err != nil {
			return Pos{}, ih, nil, err
		}
		pending, pendingPgno = pages[0].data, 1
	}
	if err := writeFrame(pendingPgno, commit, pending); err != nil {
		return Pos{}, ih, nil, d.fail(err)
	}
	if err := wal.Sync(); err != nil {
		return Pos{}, ih, nil, d.fail(fmt.Errorf("sync WAL: %w", err))
	}

	// The frames are committed: follow the WAL past them, as if the store
	// had captured them, so that they never become change sets again.
	if ih.mxFrame == 0 {
		w.startGeneration(hdr)
	}
	for i, pgno := range pgnos {
		at := off + int64(i)*fs
		w.index[pgno] = at
		w.versions[pgno] = append(w.versions[pgno], at)
	}
	end := off + int64(len(pgnos))*fs
	w.commitOff, w.commitCksum = end, cksum
	w.scanOff, w.scanCksum = end, cksum
	w.maxEnd = max(w.maxEnd, end)
	w.lastCommit = commit
	for pgno := range w.index {
		if pgno > commit {
			delete(w.index, pgno)
		}
	}
	pos, err := d.logAppliedLocked(c, true)
	if err != nil {
		return Pos{}, ih, nil, err
	}

	next := ih
	next.change++
	next.bigEndian = hdr.bigEndian
	next.pageSize = pageSize
	next.mxFrame = uint32((end - walHeaderSize) / fs)
	next.nPage = commit
	next.frameCksum = cksum
	binary.BigEndian.PutUint32(next.salt[0:], hdr.salt1)
	binary.BigEndian.PutUint32(next.salt[4:], hdr.salt2)
	return pos, next, pgnos, nil
}

// startWALGeneration writes a new WAL header to wal, as SQLite's writer
// does when it restarts the WAL: the checkpoint sequence advances, the
// first salt is one more than the last generation's and the second is
// random, so that no frame left from before is taken for one of the new
// generation.
func startWALGeneration(wal *os.File, ih walIndexHeader, pageSize uint32) (walHeader, error) {
	b := make([]byte, walHeaderSize)
	var seq uint32
	if n, _ := wal.ReadAt(b, 0); n == walHeaderSize {
		if _, ok := parseWALHeader(b); ok {
			seq = binary.BigEndian.Uint32(b[walHeaderCkptSeq:]) + 1
		}
	}
	old1, _ := ih.salts()
	clear(b)
	binary.BigEndian.PutUint32(b[0:], walMagicLE)
	binary.BigEndian.PutUint32(b[walHeaderVersion:], walFormatVersion)
	binary.BigEndian.PutUint32(b[walHeaderPgsz:], pageSize)
	binary.BigEndian.PutUint32(b[walHeaderCkptSeq:], seq)
	binary.BigEndian.PutUint32(b[walHeaderSalt1:], old1+1)
	binary.BigEndian.PutUint32(b[walHeaderSalt1+4:], rand.Uint32())
	c := walChecksum(false, [2]uint32{}, b[:walHeaderCksumN])
	binary.BigEndian.PutUint32(b[walHeaderCksum:], c[0])
	binary.BigEndian.PutUint32(b[walHeaderCksum+4:], c[1])
	if _, err := wal.WriteAt(b, 0); err != nil {
		return walHeader{}, fmt.Errorf("write WAL header: %w", err)
	}
	h, ok := parseWALHeader(b)
	if !ok {
		return walHeader{}, errors.New("new WAL header does not parse")
	}
	return h, nil
}
