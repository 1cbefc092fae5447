package ferry

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// page is one database page of a change set.
type page struct {
	pgno uint32
	data []byte
}

// changeSet is one committed transaction, ready to be written as an LTX
// file.
type changeSet struct {
	pageSize uint32
	commit   uint32 // database size in pages after the transaction
	pages    []page // ascending page numbers, without the lock page
	full     bool   // pages holds every page: a snapshot or a rewrite

	// Where the transaction sits in the WAL, for WAL-mode commits.
	walOffset, walSize int64
	walSalt1, walSalt2 uint32
}

// queued is a change set that is captured but not yet in an LTX file.
type queued struct {
	hdr       ltx.Header
	pages     []page
	post      ltx.Checksum
	persisted bool // appended to the pending log
}

// maxQueued bounds the change sets that wait to be written as one file.
const maxQueued = 1024

// writeChangeSet records cs as the next transaction: it updates the page
// checksums and the position, and queues the change set. When durable is
// set (the application synced its own files), the change set is made
// durable before it returns, by appending it to the pending log. Queued
// change sets are written to the LTX log by the background flusher, one
// file per group (see flushLocked).
func (d *DB) writeChangeSet(cs changeSet, durable bool) error {
	if d.broken != nil {
		return d.broken
	}
	if len(d.queue) > 0 && d.queue[len(d.queue)-1].hdr.PageSize != cs.pageSize {
		// A file has one page size: flush before the page size changes.
		if err := d.flushLocked(); err != nil {
			return err
		}
	}
	txid := d.pos.TXID + 1
	var pre ltx.Checksum
	if txid > 1 {
		pre = d.pos.PostApplyChecksum
	}

	// The new rolling checksum: XOR out each replaced page, XOR in its new
	// version, and XOR out pages past the new end.
	sums := d.sums
	sum := d.sum
	if cs.full {
		sums = make([]ltx.Checksum, cs.commit)
		sum = 0
	} else if uint32(len(sums)) < cs.commit {
		sums = append(sums, make([]ltx.Checksum, int(cs.commit)-len(sums))...)
	}
	for _, p := range cs.pages {
		c := ltx.ChecksumPage(p.pgno, p.data)
		sum ^= sums[p.pgno-1] ^ c
		sums[p.pgno-1] = c
	}
	for p := cs.commit; p < uint32(len(sums)); p++ {
		sum ^= sums[p]
		sums[p] = 0
	}
	sums = sums[:cs.commit]
	post := ltx.ChecksumFlag | sum

	hdr := ltx.Header{
		Version:          ltx.Version,
		PageSize:         cs.pageSize,
		Commit:           cs.commit,
		MinTXID:          ltx.TXID(txid),
		MaxTXID:          ltx.TXID(txid),
		Timestamp:        time.Now().UnixMilli(),
		PreApplyChecksum: pre,
		WALOffset:        cs.walOffset,
		WALSize:          cs.walSize,
		WALSalt1:         cs.walSalt1,
		WALSalt2:         cs.walSalt2,
	}
	d.sums, d.sum = sums, sum
	d.pageSize, d.pageN = cs.pageSize, cs.commit
	d.pos = Pos{TXID: ltx.TXID(txid), PostApplyChecksum: post}
	d.lastHdr = hdr
	for _, p := range cs.pages {
		if p.pgno == 1 {
			d.walMode = dbHeader(p.data).walMode()
		}
	}
	d.queue = append(d.queue, queued{hdr: hdr, pages: cs.pages, post: post})
	for _, l := range d.store.capturers {
		l.Captured(d.name, d.pos)
	}
	d.store.subs.wake(d.name)
	if durable {
		if err := d.persistLocked(); err != nil {
			return err
		}
	}
	if len(d.queue) >= maxQueued {
		return d.flushLocked()
	}
	d.store.kickSyncer()
	return nil
}

// persistLocked makes every queued change set durable by appending it to
// the pending log and syncing that once: a group commit. Recovery turns
// the pending log back into LTX files, exactly as they were captured.
func (d *DB) persistLocked() error {
	var buf bytes.Buffer
	n := 0
	for i := range d.queue {
		q := &d.queue[i]
		if q.persisted {
			continue
		}
		start := buf.Len()
		buf.Write(make([]byte, 8)) // length, filled in below
		if err := encodeLTX(&buf, q.hdr, q.pages, q.post); err != nil {
			return d.fail(err)
		}
		binary.BigEndian.PutUint64(buf.Bytes()[start:], uint64(buf.Len()-start-8))
		q.persisted = true
		n++
	}
	if n == 0 {
		return nil
	}
	if d.pending == nil {
		f, err := os.OpenFile(d.store.layout.PendingPath(d.name), os.O_RDWR|os.O_CREATE, 0o644)
		if os.IsNotExist(err) {
			if err := os.MkdirAll(d.store.layout.MetaDir(d.name), 0o755); err != nil {
				return d.fail(err)
			}
			f, err = os.OpenFile(d.store.layout.PendingPath(d.name), os.O_RDWR|os.O_CREATE, 0o644)
		}
		if err != nil {
			return d.fail(fmt.Errorf("open pending log: %w", err))
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return d.fail(err)
		}
		d.pending, d.pendingSize = f, fi.Size()
	}
	if _, err := d.pending.WriteAt(buf.Bytes(), d.pendingSize); err != nil {
		return d.fail(fmt.Errorf("append to pending log: %w", err))
	}
	d.pendingSize += int64(buf.Len())
	if err := d.pending.Sync(); err != nil {
		return d.fail(fmt.Errorf("sync pending log: %w", err))
	}
	return nil
}

// flushLocked writes the queued change sets to the LTX log as one file
// covering their TXIDs (newest version of each page, the first's
// pre-apply and the last's post-apply checksum), syncs it, empties the
// pending log, records the position and tells the listeners. Grouping
// keeps the cost of creating files, which dominates on some filesystems,
// off the commit path.
func (d *DB) flushLocked() error {
	if len(d.queue) == 0 {
		return nil
	}
	first, last := d.queue[0], d.queue[len(d.queue)-1]
	hdr := last.hdr
	hdr.MinTXID = first.hdr.MinTXID
	hdr.PreApplyChecksum = first.hdr.PreApplyChecksum
	pages := last.pages
	if len(d.queue) > 1 {
		newest := make(map[uint32][]byte)
		for _, q := range d.queue {
			for _, p := range q.pages {
				newest[p.pgno] = p.data
			}
		}
		pages = make([]page, 0, len(newest))
		for pgno, data := range newest {
			if pgno <= hdr.Commit {
				pages = append(pages, page{pgno: pgno, data: data})
			}
		}
		sort.Slice(pages, func(i, j int) bool { return pages[i].pgno < pages[j].pgno })
		// The WAL range covers the group only if it is one stretch of one
		// WAL generation.
		hdr.WALOffset, hdr.WALSize, hdr.WALSalt1, hdr.WALSalt2 = 0, 0, 0, 0
		if first.hdr.WALOffset != 0 && first.hdr.WALSalt1 == last.hdr.WALSalt1 && first.hdr.WALSalt2 == last.hdr.WALSalt2 &&
			last.hdr.WALOffset >= first.hdr.WALOffset {
			hdr.WALOffset = first.hdr.WALOffset
			hdr.WALSize = last.hdr.WALOffset + last.hdr.WALSize - first.hdr.WALOffset
			hdr.WALSalt1, hdr.WALSalt2 = last.hdr.WALSalt1, last.hdr.WALSalt2
		}
	}
	// Write under a temporary name and rename when complete and synced, so
	// that readers of the log never see a partial file.
	f, err := d.createLTX(hdr.MinTXID, hdr.MaxTXID, ".tmp")
	if err != nil {
		return d.fail(err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	err = encodeLTX(w, hdr, pages, last.post)
	if err == nil {
		err = w.Flush()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.store.layout.LTXPath(d.name, hdr.MinTXID, hdr.MaxTXID))
	}
	if err == nil && d.pendingSize > 0 {
		// The pending log is emptied next: the new name must be durable
		// first.
		err = syncDir(d.store.layout.LTXDir(d.name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return d.fail(fmt.Errorf("write LTX file: %w", err))
	}
	d.keepRecentLocked()
	d.queue = d.queue[:0]
	if d.pendingSize > 0 {
		if err := d.pending.Truncate(0); err != nil {
			return d.fail(fmt.Errorf("empty pending log: %w", err))
		}
		d.pendingSize = 0
	}
	pos := Pos{TXID: hdr.MaxTXID, PostApplyChecksum: last.post}
	if err := d.writePosFile(pos); err != nil {
		return d.fail(err)
	}
	d.store.commits.add(d.name, uint64(hdr.MaxTXID-hdr.MinTXID+1), uint64(size))
	d.store.notify(d.name, pos)
	return nil
}

// createLTX creates the log file for TXIDs min to max, with suffix added
// to its name.
func (d *DB) createLTX(min, max ltx.TXID, suffix string) (*os.File, error) {
	dir := d.store.layout.LTXDir(d.name)
	path := d.store.layout.LTXPath(d.name, min, max) + suffix
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create LTX directory: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("create LTX file: %w", err)
	}
	return f, nil
}

// encodeLTX writes one LTX file to w.
func encodeLTX(w io.Writer, hdr ltx.Header, pages []page, post ltx.Checksum) error {
	enc, err := ltx.NewEncoder(w)
	if err != nil {
		return err
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return fmt.Errorf("encode LTX header: %w", err)
	}
	for _, p := range pages {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
			return fmt.Errorf("encode page %d: %w", p.pgno, err)
		}
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		return fmt.Errorf("close LTX encoder: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory so that entries created in it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
