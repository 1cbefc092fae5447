package ferry

import (
	"errors"
	"fmt"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// ErrNotCheckpoint is returned by CheckDBWrite for a write to a WAL-mode
// database file that is not a checkpoint.
var ErrNotCheckpoint = errors.New("write to a WAL-mode database outside a transaction: not a checkpoint")

// CaptureWritesOutside turns the pages written to the database outside any
// rollback-journal transaction into one durable change set. The mount calls
// it when a handle that made such writes is flushed or released: a file
// copied in is then complete, and a tool such as dd is done. Without it
// those pages would wait for the next transaction, or for nothing at all
// if Ferry stopped first, and the log would silently differ from the file.
func (d *DB) CaptureWritesOutside() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.captureWritesOutsideLocked()
}

func (d *DB) captureWritesOutsideLocked() error {
	if d.state != stateDatabase || d.journalActive || d.walMode || len(d.dirty) == 0 || d.broken != nil {
		return nil
	}
	if hdr, err := d.readHeader(); err != nil || !hdr.valid() {
		// Not (yet) a database: nothing can be captured. The pages stay
		// dirty, and the checksum index is not saved, so the next start
		// reads every page.
		d.logger.Warn("database written outside a transaction has no valid header; not capturing it yet", "pages", len(d.dirty))
		return nil
	}
	before := d.pos
	if err := d.commitJournalLocked(); err != nil {
		return err
	}
	if d.pos != before {
		d.logger.Info("captured writes made outside a transaction", "pos", d.pos)
	}
	return d.persistLocked()
}

// CheckDBWrite tells, before it is made, whether a write to a WAL-mode
// database file is a checkpoint. In WAL mode SQLite writes the database
// file only to copy committed WAL frames into it, whole pages at page
// boundaries. Anything else (a tool such as dd, or a program that swaps
// database files under SQLite's locks, as SQLite's own tests do) changes
// the database without a change set. Such a write is let through, since
// refusing it breaks programs that have every right to make it, but it is
// reported as an error, and the checksum index is not saved when the
// database closes: the next start reads every page and brings the log
// level with the file with a change set of every page. The WAL must have
// been caught up (CatchUpWAL) so that every frame the checkpoint may copy
// is known. It returns ErrNotCheckpoint for a write that is not one.
func (d *DB) CheckDBWrite(off int64, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateDatabase || !d.walMode || d.journalActive || len(data) == 0 {
		return nil
	}
	ps := int64(d.pageSize)
	if ps == 0 {
		return nil
	}
	if off%ps != 0 || int64(len(data))%ps != 0 {
		return d.foreignWrite(off, len(data), "not whole pages")
	}
	for i := int64(0); i < int64(len(data)); i += ps {
		pgno := uint32((off+i)/ps + 1)
		ok, err := d.isCommittedVersion(pgno, data[i:i+ps])
		if err != nil {
			return fmt.Errorf("check checkpoint write: %w", err)
		}
		if !ok {
			return d.foreignWrite(off, len(data), fmt.Sprintf("page %d matches no committed version", pgno))
		}
	}
	return nil
}

// foreignWrite records a write to a WAL-mode database that is not a
// checkpoint, and reports it.
func (d *DB) foreignWrite(off int64, n int, why string) error {
	if !d.foreign {
		d.logger.Error("a write outside a transaction changed a WAL-mode database; its log will be repaired from the file at the next start",
			"offset", off, "len", n, "reason", why)
	}
	d.foreign = true
	return fmt.Errorf("database %q: %w (%s)", d.name, ErrNotCheckpoint, why)
}

// isCommittedVersion reports whether data is a version of page pgno that
// a checkpoint may copy into the database: its current content, or the
// content of a committed frame of the current WAL (a checkpoint stops at
// the oldest snapshot a reader still uses, so it may copy an older one).
func (d *DB) isCommittedVersion(pgno uint32, data []byte) (bool, error) {
	c := ltx.ChecksumPage(pgno, data)
	if int(pgno) <= len(d.sums) && d.sums[pgno-1] == c {
		return true, nil
	}
	offs := d.wal.versions[pgno]
	if len(offs) == 0 {
		return false, nil
	}
	f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
	if err != nil {
		return false, fmt.Errorf("open WAL: %w", err)
	}
	defer f.Close()
	buf := make([]byte, len(data))
	for _, off := range offs {
		if _, err := f.ReadAt(buf, off+walFrameHeaderSize); err != nil {
			return false, fmt.Errorf("read WAL frame at %d: %w", off, err)
		}
		if ltx.ChecksumPage(pgno, buf) == c {
			return true, nil
		}
	}
	return false, nil
}
