package ferry

import (
	"bufio"
	"fmt"
	"os"
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

// writeChangeSet writes cs as the next LTX file, updates the page checksums
// and the position, and syncs the file when durable is set (otherwise the
// next Sync does).
func (d *DB) writeChangeSet(cs changeSet, durable bool) error {
	if d.broken != nil {
		return d.broken
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
	f, err := d.createLTX(txid, txid)
	if err != nil {
		return d.fail(err)
	}
	if err := encodeChangeSet(f, hdr, cs.pages, post); err != nil {
		f.Close()
		_ = os.Remove(f.Name())
		return d.fail(err)
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
	d.unsynced = append(d.unsynced, f)
	d.unsyncedPos = d.pos
	if durable || len(d.unsynced) >= maxUnsynced {
		return d.syncLocked()
	}
	d.store.kickSyncer()
	return nil
}

// maxUnsynced bounds the change sets that wait for a group sync.
const maxUnsynced = 256

// createLTX creates the log file for TXIDs min to max.
func (d *DB) createLTX(min, max ltx.TXID) (*os.File, error) {
	dir := d.store.layout.LTXDir(d.name)
	path := d.store.layout.LTXPath(d.name, min, max)
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

// encodeChangeSet writes one LTX file to f.
func encodeChangeSet(f *os.File, hdr ltx.Header, pages []page, post ltx.Checksum) error {
	w := bufio.NewWriterSize(f, 64<<10)
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
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write LTX file: %w", err)
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
