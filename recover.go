package ferry

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// open loads a database found on disk and recovers it so that its content
// matches the end of its log:
//
//   - a hot rollback journal (a transaction cut off by a crash) is rolled
//     back, and uncommitted WAL frames are ignored, so neither makes a
//     change set;
//   - after a clean shutdown the saved checksum index is loaded, so start-up
//     does not read every page;
//   - otherwise every page's checksum is recomputed;
//   - commits in the WAL after the log's position (captured but not yet
//     durable when Ferry stopped) become one change set each, as if
//     captured live;
//   - and if the database is still not at the position its log records (a
//     crash between the write of the database and the sync of its change
//     set), one change set holding every page brings the log to the
//     database's state.
func (d *DB) open(ctx context.Context) error {
	d.state = stateDatabase
	path := d.store.layout.DBPath(d.name)
	rolledBack, err := rollbackHotJournal(path)
	if err != nil {
		return fmt.Errorf("roll back hot journal: %w", err)
	}
	if rolledBack {
		d.logger.Info("rolled back a transaction cut off by a crash")
	}
	if err := d.openFile(); err != nil {
		return err
	}
	if err := d.loadLog(); err != nil {
		return err
	}
	hdr, err := d.readHeader()
	if err != nil || !hdr.valid() {
		return fmt.Errorf("read database header: %w", err)
	}
	pageSize := hdr.pageSize()
	// Follow the WAL only as far as the log has captured it, if the log
	// says where that is; the commits after it are captured below.
	stop := d.walLogEnd()
	if err := d.loadWAL(stop); err != nil {
		return err
	}
	resume := stop != 0 && d.wal.commitOff == stop
	pageN, err := d.logicalPageCount(hdr)
	if err != nil {
		return err
	}

	if !rolledBack && d.loadIndex(pageSize, pageN) {
		d.logger.Debug("loaded checksum index", "pos", d.pos)
	} else {
		matched, err := d.recompute(ctx, pageSize, pageN, !resume)
		if err != nil {
			return err
		}
		if resume && !matched {
			// The database is not where the log and the WAL say: follow
			// the whole WAL and bring the log to what it holds.
			resume = false
			if err := d.loadWAL(0); err != nil {
				return err
			}
			if pageN, err = d.logicalPageCount(hdr); err != nil {
				return err
			}
			if _, err := d.recompute(ctx, pageSize, pageN, true); err != nil {
				return err
			}
		}
	}
	if resume {
		if err := d.captureRestOfWAL(); err != nil {
			return err
		}
	}
	// The index is only trusted after a clean shutdown: remove it until the
	// next one writes it again.
	if err := removeIfExists(d.indexPath()); err != nil {
		return fmt.Errorf("remove checksum index: %w", err)
	}
	d.walMode = hdr.walMode()
	if page1, err := d.readLogicalPages([]uint32{1}, pageSize); err == nil && len(page1) == 1 {
		d.walMode = dbHeader(page1[0].data).walMode()
	}
	return d.syncLocked()
}

// logicalPageCount is the database size the application sees.
func (d *DB) logicalPageCount(hdr dbHeader) (uint32, error) {
	if d.wal.hdrOK && d.wal.commitOff > walHeaderSize {
		return d.wal.lastCommit, nil
	}
	if n, ok := hdr.pageCount(); ok {
		return n, nil
	}
	fi, err := d.file.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat database: %w", err)
	}
	return uint32(fi.Size() / int64(hdr.pageSize())), nil
}

// walLogEnd returns the offset in the current WAL up to which the log has
// captured its commits, or 0 when the log does not say: its newest change
// set records the stretch of the WAL it came from, and a WAL whose
// generation differs was restarted after a checkpoint, which syncs the WAL
// and with it every change set captured before, so the log ends at the new
// generation's beginning. A wrong answer costs nothing but time: the
// database's checksum at that point must match the log's.
func (d *DB) walLogEnd() int64 {
	if d.pos.TXID == 0 {
		return 0
	}
	f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, walHeaderSize)
	if n, _ := f.ReadAt(b, 0); n < walHeaderSize {
		return 0
	}
	h, ok := parseWALHeader(b)
	if !ok {
		return 0
	}
	last := d.lastHdr
	if last.WALOffset == 0 {
		// The log's newest change set did not come from a WAL: frames
		// there may be ones a checkpoint already put in the database.
		return 0
	}
	if last.WALSalt1 == h.salt1 && last.WALSalt2 == h.salt2 {
		return last.WALOffset + last.WALSize
	}
	return walHeaderSize
}

// captureRestOfWAL captures every transaction committed to the WAL after
// the point the store follows it from, one change set each.
func (d *DB) captureRestOfWAL() error {
	f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
	if err != nil {
		return fmt.Errorf("open WAL: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat WAL: %w", err)
	}
	d.wal.maxEnd = fi.Size()
	before := d.pos.TXID
	if err := d.scanWAL(f); err != nil {
		return err
	}
	if n := d.pos.TXID - before; n > 0 {
		d.logger.Info("captured commits from the WAL that the log lacked", "commits", n, "pos", d.pos)
	}
	return nil
}

// loadWAL reads an existing WAL and follows it from its last committed
// frame, or, when stop is not zero, from the commit that ends at stop if
// there is one.
func (d *DB) loadWAL(stop int64) error {
	d.wal.reset()
	f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("open WAL: %w", err)
	}
	defer f.Close()
	b := make([]byte, walHeaderSize)
	if n, _ := f.ReadAt(b, 0); n < walHeaderSize {
		return nil
	}
	h, ok := parseWALHeader(b)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat WAL: %w", err)
	}
	w := &d.wal
	w.startGeneration(h)
	fs := w.frameSize()
	buf := make([]byte, fs)
	for w.scanOff+fs <= fi.Size() && w.commitOff != stop {
		if _, err := f.ReadAt(buf, w.scanOff); err != nil {
			return fmt.Errorf("read WAL: %w", err)
		}
		cksum, ok := walFrameValid(h, w.scanCksum, buf[:walFrameHeaderSize], buf[walFrameHeaderSize:])
		if !ok {
			break
		}
		w.pending = append(w.pending, walFrame{off: w.scanOff, pgno: binary.BigEndian.Uint32(buf[0:4])})
		w.scanOff += fs
		w.scanCksum = cksum
		if commit := binary.BigEndian.Uint32(buf[4:8]); commit != 0 {
			for _, fr := range w.pending {
				w.index[fr.pgno] = fr.off
				w.versions[fr.pgno] = append(w.versions[fr.pgno], fr.off)
			}
			for pgno := range w.index {
				if pgno > commit {
					delete(w.index, pgno)
				}
			}
			w.pending = nil
			w.commitOff, w.commitCksum = w.scanOff, w.scanCksum
			w.lastCommit = commit
		}
	}
	// Frames after the last commit were never committed: SQLite ignores
	// them and overwrites them with the next transaction.
	w.pending = nil
	w.scanOff, w.scanCksum = w.commitOff, w.commitCksum
	w.maxEnd = w.commitOff
	return nil
}

// recompute reads every page and rebuilds the checksum index. It reports
// whether the database is where its log says; if it is not and snapshot is
// set, it writes a change set that brings the log there.
func (d *DB) recompute(ctx context.Context, pageSize, pageN uint32, snapshot bool) (matched bool, err error) {
	sums := make([]ltx.Checksum, pageN)
	var sum ltx.Checksum
	const batch = 1024
	for start := uint32(1); start <= pageN; start += batch {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		end := min(start+batch-1, pageN)
		pages, err := d.readLogicalPages(pageRange(start, end), pageSize)
		if err != nil {
			return false, err
		}
		for _, p := range pages {
			c := ltx.ChecksumPage(p.pgno, p.data)
			sums[p.pgno-1] = c
			sum ^= c
		}
	}
	if d.pos.TXID != 0 && ltx.ChecksumFlag|sum == d.pos.PostApplyChecksum {
		d.sums, d.sum, d.pageSize, d.pageN = sums, sum, pageSize, pageN
		return true, nil
	}
	if !snapshot || pageN == 0 {
		return false, nil
	}
	if d.pos.TXID != 0 {
		// Either a crash came between a write of the database and the sync
		// of its change set, or the file was changed behind Ferry's back.
		d.logger.Error("database does not match its log; repairing the log with a change set of every page",
			"pos", d.pos, "checksum", ltx.ChecksumFlag|sum)
	}
	pages, err := d.readLogicalPages(allPages(pageSize, pageN), pageSize)
	if err != nil {
		return false, err
	}
	cs := changeSet{pageSize: pageSize, commit: pageN, pages: pages, full: true}
	if d.wal.hdrOK && d.wal.commitOff > walHeaderSize {
		// Record where the WAL stands so that the next start does not
		// capture these frames again.
		cs.walOffset, cs.walSize = walHeaderSize, d.wal.commitOff-walHeaderSize
		cs.walSalt1, cs.walSalt2 = d.wal.hdr.salt1, d.wal.hdr.salt2
	}
	return false, d.writeChangeSet(cs, true)
}

// pageRange lists pages start to end.
func pageRange(start, end uint32) []uint32 {
	pgnos := make([]uint32, 0, end-start+1)
	for p := start; p <= end; p++ {
		pgnos = append(pgnos, p)
	}
	return pgnos
}
