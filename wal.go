package ferry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ferrydb/ferry/ltx"
)

// walState follows the WAL file as SQLite appends to it. Frames are
// validated as they arrive (salts and the checksum chain, exactly as SQLite
// does on recovery); a valid frame with a non-zero commit size ends a
// transaction, whose frames become one change set.
type walState struct {
	hdr   walHeader
	hdrOK bool

	commitOff   int64 // end of the last committed frame
	commitCksum [2]uint32
	scanOff     int64 // end of the last valid frame
	scanCksum   [2]uint32
	pending     []walFrame // valid frames after commitOff
	maxEnd      int64      // end of the data written to this WAL generation
	lastCommit  uint32     // database size in pages at the last commit

	// index maps each page to the offset of its newest committed frame in
	// this generation, so that the logical database can be read.
	index map[uint32]int64
	// versions lists, for each page, the offsets of all its committed
	// frames in this generation: a checkpoint may copy any of them.
	versions map[uint32][]int64
}

// walFrame is a validated frame of the transaction in progress.
type walFrame struct {
	off    int64
	pgno   uint32
	commit uint32
	cksum  [2]uint32 // running checksum after this frame
	data   []byte
}

func (w *walState) frameSize() int64 { return walFrameHeaderSize + int64(w.hdr.pageSize) }

// reset forgets the WAL: it was deleted, truncated, or is being rewritten.
func (w *walState) reset() {
	*w = walState{}
}

// startGeneration begins following a WAL whose header is h.
func (w *walState) startGeneration(h walHeader) {
	*w = walState{
		hdr:         h,
		hdrOK:       true,
		commitOff:   walHeaderSize,
		commitCksum: h.cksum,
		scanOff:     walHeaderSize,
		scanCksum:   h.cksum,
		maxEnd:      walHeaderSize,
		index:       make(map[uint32]int64),
		versions:    make(map[uint32][]int64),
	}
}

// WALWritten records a write of data at off to the WAL file, which the
// mount has already made, and captures any transaction it commits.
func (d *DB) WALWritten(f *os.File, off int64, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateDatabase {
		return nil
	}
	w := &d.wal
	if off < walHeaderSize {
		// A new header: SQLite restarts the log after a full checkpoint.
		b := make([]byte, walHeaderSize)
		if _, err := f.ReadAt(b, 0); err != nil {
			w.reset()
			return nil
		}
		if h, ok := parseWALHeader(b); ok {
			w.startGeneration(h)
		} else {
			w.reset()
		}
		return nil
	}
	if !w.hdrOK {
		return nil
	}
	end := off + int64(len(data))
	w.maxEnd = max(w.maxEnd, end)
	if off < w.scanOff {
		if off < w.commitOff {
			d.logger.Warn("write into committed WAL frames", "offset", off)
			return nil
		}
		// SQLite rewrites a frame of the open transaction in place when the
		// same page changes again; drop it and the frames after it.
		i := sort.Search(len(w.pending), func(i int) bool {
			return w.pending[i].off+w.frameSize() > off
		})
		w.pending = w.pending[:i]
		w.scanOff, w.scanCksum = w.commitOff, w.commitCksum
		if i > 0 {
			last := w.pending[i-1]
			w.scanOff, w.scanCksum = last.off+w.frameSize(), last.cksum
		}
	}
	return d.scanWAL(f)
}

// scanWAL validates the frames written after scanOff and commits each
// completed transaction.
func (d *DB) scanWAL(f *os.File) error {
	w := &d.wal
	fs := w.frameSize()
	for w.scanOff+fs <= w.maxEnd {
		buf := make([]byte, fs)
		if n, _ := f.ReadAt(buf, w.scanOff); int64(n) < fs {
			return nil
		}
		cksum, ok := walFrameValid(w.hdr, w.scanCksum, buf[:walFrameHeaderSize], buf[walFrameHeaderSize:])
		if !ok {
			return nil
		}
		fr := walFrame{
			off:    w.scanOff,
			pgno:   binary.BigEndian.Uint32(buf[0:4]),
			commit: binary.BigEndian.Uint32(buf[4:8]),
			cksum:  cksum,
			data:   buf[walFrameHeaderSize:],
		}
		w.pending = append(w.pending, fr)
		w.scanOff += fs
		w.scanCksum = cksum
		if fr.commit != 0 {
			if err := d.commitWALLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// commitWALLocked turns the pending frames, which end with a commit frame,
// into one change set.
func (d *DB) commitWALLocked() error {
	w := &d.wal
	frames := w.pending
	last := frames[len(frames)-1]
	start := w.commitOff
	w.pending = nil
	w.commitOff, w.commitCksum = w.scanOff, w.scanCksum

	newest := make(map[uint32]walFrame, len(frames))
	for _, fr := range frames {
		newest[fr.pgno] = fr
		w.index[fr.pgno] = fr.off
		w.versions[fr.pgno] = append(w.versions[fr.pgno], fr.off)
	}
	commit := last.commit
	w.lastCommit = commit
	for pgno := range w.index {
		if pgno > commit {
			delete(w.index, pgno)
		}
	}

	pageSize := w.hdr.pageSize
	full := d.pos.TXID == 0 || pageSize != d.pageSize
	cs := changeSet{
		pageSize:  pageSize,
		commit:    commit,
		full:      full,
		walOffset: start,
		walSize:   w.commitOff - start,
		walSalt1:  w.hdr.salt1,
		walSalt2:  w.hdr.salt2,
	}
	if full {
		pages, err := d.readLogicalPages(allPages(pageSize, commit), pageSize)
		if err != nil {
			return d.fail(err)
		}
		cs.pages = pages
	} else {
		for pgno, fr := range newest {
			if pgno <= commit {
				cs.pages = append(cs.pages, page{pgno: pgno, data: fr.data})
			}
		}
		// Pages past the old end that no frame holds are zero.
		for p := d.pageN + 1; p <= commit; p++ {
			if _, ok := newest[p]; !ok && p != ltx.LockPgno(pageSize) {
				cs.pages = append(cs.pages, page{pgno: p, data: make([]byte, pageSize)})
			}
		}
		sort.Slice(cs.pages, func(i, j int) bool { return cs.pages[i].pgno < cs.pages[j].pgno })
	}
	return d.writeChangeSet(cs, false)
}

// WALTruncated records a truncate of the WAL file.
func (d *DB) WALTruncated(size int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &d.wal
	if size < walHeaderSize {
		w.reset()
		return
	}
	w.maxEnd = min(w.maxEnd, size)
	if size < w.commitOff {
		d.logger.Warn("WAL truncated into committed frames", "size", size)
		w.reset()
	}
}

// WALRemoved records the deletion of the WAL file.
func (d *DB) WALRemoved() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wal.reset()
	d.closeWALReaderLocked()
}

// WALSynced records an fsync of the WAL: the application asked for its
// commits to be durable (synchronous=FULL, or a checkpoint), so the change
// sets are synced too before the fsync returns.
func (d *DB) WALSynced() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		return err
	}
	return d.persistLocked()
}

// readLogicalPages reads pages as the application sees them: the newest
// committed WAL frame of each page, or else the database file.
func (d *DB) readLogicalPages(pgnos []uint32, pageSize uint32) ([]page, error) {
	var wal *os.File
	if d.wal.hdrOK && len(d.wal.index) > 0 {
		f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
		if err != nil {
			return nil, fmt.Errorf("open WAL: %w", err)
		}
		defer f.Close()
		wal = f
	}
	lock := ltx.LockPgno(pageSize)
	pages := make([]page, 0, len(pgnos))
	for _, pgno := range pgnos {
		if pgno == lock {
			continue
		}
		data := make([]byte, pageSize)
		if off, ok := d.wal.index[pgno]; ok && wal != nil {
			if _, err := wal.ReadAt(data, off+walFrameHeaderSize); err != nil {
				return nil, fmt.Errorf("read page %d from WAL: %w", pgno, err)
			}
		} else {
			n, err := d.file.ReadAt(data, int64(pgno-1)*int64(pageSize))
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read page %d: %w", pgno, err)
			}
			clear(data[n:]) // a page SQLite never wrote reads as zeros
		}
		pages = append(pages, page{pgno: pgno, data: data})
	}
	return pages, nil
}
