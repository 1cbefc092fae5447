package replicate

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// Changes of page size. A VACUUM after PRAGMA page_size (or auto_vacuum)
// rewrites every page at the new size, and the core captures it as one
// change set holding every page. LTX files of different page sizes cannot
// be merged, and stock tools (Litestream's restore, `ltx apply`) cannot
// apply one onto the other, so:
//
//   - an upload batch and a compaction never mix page sizes;
//   - the head records the page size and the TXID where it last changed;
//   - right after the first file at a new page size is stored, a level-9
//     snapshot is written where that file ends, so that every restore
//     past the change, whoever does it, can start from a snapshot of one
//     page size;
//   - Ferry's own restore and catch-up also cross the change directly,
//     checking the file's pre-apply checksum against the old database.

// samePageSize cuts batch before the first file whose page size differs
// from the first file's. LTX files of one page size cannot be merged with
// another's, and a change of page size (VACUUM after PRAGMA page_size)
// then starts the next batch.
func samePageSize(batch []localFile) ([]localFile, error) {
	var first uint32
	for i, lf := range batch {
		size, err := localPageSize(lf.Path)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			first = size
		} else if size != first {
			return batch[:i], nil
		}
	}
	return batch, nil
}

// localPageSize reads the page size from a local LTX file's header.
func localPageSize(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open local LTX file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(f, buf); err != nil {
		return 0, fmt.Errorf("read header of %s: %w", path, err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(buf); err != nil {
		return 0, fmt.Errorf("local file %s: %w", path, err)
	}
	return hdr.PageSize, nil
}

// nextPageSize returns the page size fields of the head that follows h
// with a batch starting at min with page size size.
func (r *Replicator) nextPageSize(ctx context.Context, db *database, min ltx.TXID, size uint32) (uint32, ltx.TXID, error) {
	h := db.files.head
	if h.TXID == 0 {
		return size, 0, nil
	}
	prev := h.PageSize
	if prev == 0 {
		// A head from before page sizes were recorded: ask the file it
		// announces.
		var err error
		if prev, err = r.bucket.pageSizeAt(ctx, db.files, h.TXID); err != nil {
			return 0, 0, err
		}
	}
	if prev != 0 && prev != size {
		return size, min, nil
	}
	return size, h.PageSizeSince, nil
}

// pageSizeAt reads the page size from the header of a file ending at txid,
// or returns zero if the bucket has none.
func (bk *Bucket) pageSizeAt(ctx context.Context, files *dbFiles, txid ltx.TXID) (uint32, error) {
	for _, lv := range files.levels {
		for _, fi := range lv {
			if fi.MaxTXID != txid {
				continue
			}
			rc, _, err := bk.backend.Get(ctx, fi.Key)
			if err != nil {
				return 0, err
			}
			hdr, _, err := ltx.PeekHeader(io.LimitReader(rc, ltx.HeaderSize))
			rc.Close()
			if err != nil {
				return 0, fmt.Errorf("object %s: %w", fi.Key, err)
			}
			return hdr.PageSize, nil
		}
	}
	return 0, nil
}

// changeSnapshotTXID returns the TXID at which the bucket needs a snapshot
// because the page size changed and no snapshot at or after the change
// exists yet: where the first file at the new page size ends, the earliest
// point a snapshot can be built, so that each later file boundary stays
// restorable by stock tools too. The caller holds db.mu.
func changeSnapshotTXID(f *dbFiles) (ltx.TXID, bool) {
	if f == nil {
		return 0, false
	}
	since := f.head.PageSizeSince
	if since <= 1 || since > f.head.TXID {
		return 0, false
	}
	for _, fi := range f.levels[SnapshotLevel] {
		if fi.MaxTXID >= since {
			return 0, false
		}
	}
	var at ltx.TXID
	for l := 0; l < SnapshotLevel; l++ {
		for _, fi := range f.levels[l] {
			if fi.MinTXID == since && fi.MaxTXID <= f.head.TXID && (at == 0 || fi.MaxTXID < at) {
				at = fi.MaxTXID
			}
		}
	}
	return at, at != 0
}

// changeSnapshot writes the snapshot a change of page size needs, if it
// is missing. The caller holds db.mu and has checked the lease.
func (r *Replicator) changeSnapshot(ctx context.Context, db *database) error {
	txid, ok := changeSnapshotTXID(db.files)
	if !ok {
		return nil
	}
	return r.snapshotAt(ctx, db, txid)
}

// pageSizeRuns splits a restore plan, whose files' headers are hdrs, into
// runs of one page size, which can each be merged into one file.
func pageSizeRuns(plan []fileInfo, hdrs []ltx.Header) [][]int {
	var runs [][]int
	for i := range plan {
		if i == 0 || hdrs[i].PageSize != hdrs[i-1].PageSize {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], i)
	}
	return runs
}
