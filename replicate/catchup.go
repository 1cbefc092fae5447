package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// CatchUp brings database name on this node up to the bucket's newest
// position before the node starts writing it, so that a node that was
// asleep can never write over history another writer added meanwhile.
//
// It downloads what the bucket holds after the local position, merges it
// into one LTX file that starts exactly one TXID after the local position,
// and applies it through applier. A database missing locally is rebuilt
// from the bucket and applied as a snapshot. It returns the position
// reached.
//
// A local history that is not a prefix of the bucket's (see
// Bucket.CatchUp) is set aside and replaced with the bucket's when applier
// is a ferry.HistoryReplacer; otherwise the error wraps ErrConflict.
func (r *Replicator) CatchUp(ctx context.Context, name string, applier ferry.Applier) (ferry.Pos, error) {
	before, err := applier.LocalPos(name)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	pos, replaced, err := r.bucket.catchUp(ctx, name, applier, func() ferry.Pos { return r.readBucketPos(name) })
	if replaced {
		r.counters.diverged.Add(1)
	}
	if err != nil {
		return pos, err
	}
	if pos != before && !replaced {
		// What was applied came from the bucket, so the copy now stands on
		// the bucket's history: a later catch-up from here needs no other
		// proof of it (see Bucket.catchUp).
		if err := r.writeBucketPos(name, pos); err != nil {
			return pos, fmt.Errorf("catch up %s: record bucket position: %w", name, err)
		}
	}
	// The bucket's view cached for uploads may be older than what was
	// just read; reload it on the next upload. This node is about to
	// write: what its local log holds beyond the bucket (commits made
	// before a crash, found while it did not hold the lease) is uploaded
	// on the next tick, not only after the next commit.
	db := r.get(name)
	db.mu.Lock()
	db.files = nil
	db.readOnly = false
	db.mu.Unlock()
	db.dirty.Store(true)
	if replaced {
		r.setBucketPos(db, pos)
	}
	return pos, nil
}

// CatchUpFunc returns CatchUp bound to applier in the form the lease
// managers take (lease.CatchUp): run it after each grant, before the first
// write.
func (r *Replicator) CatchUpFunc(applier ferry.Applier) func(ctx context.Context, name string) error {
	return func(ctx context.Context, name string) error {
		_, err := r.CatchUp(ctx, name, applier)
		return err
	}
}

// CatchUp is Replicator.CatchUp without a replicator.
func (bk *Bucket) CatchUp(ctx context.Context, name string, applier ferry.Applier) (ferry.Pos, error) {
	pos, _, err := bk.catchUp(ctx, name, applier, nil)
	return pos, err
}

// catchUp is CatchUp; replaced reports that the local copy diverged and
// was replaced with the bucket's. verified, when not nil, returns the last
// position this node knows to be on the bucket's history (one it stored,
// restored or applied from the bucket); a local copy still there needs no
// further proof.
//
// Divergence is decided only on checksums: the head's against the local
// copy at the same TXID, or an object's pre-apply checksum against the
// local position it continues. A bucket that does not show every change
// set its head announces is not a divergence. Its newest object may still
// be in flight (upload.go writes the head first), and a listing may lag;
// so the bucket is read again a few times, and then the copy is brought
// as far as the objects reach.
func (bk *Bucket) catchUp(ctx context.Context, name string, applier ferry.Applier, verified func() ferry.Pos) (_ ferry.Pos, replaced bool, _ error) {
	wait := viewRetryWait
	for attempt := 1; ; attempt++ {
		// Read each time: a restore on open may create the database
		// while a catch-up from nothing waits for the bucket.
		local, err := applier.LocalPos(name)
		if err != nil {
			return ferry.Pos{}, false, fmt.Errorf("catch up %s: %w", name, err)
		}
		var proven ferry.Pos
		if verified != nil {
			proven = verified()
		}
		final := attempt == viewAttempts
		pos, replaced, err := bk.catchUpOnce(ctx, name, applier, local, proven, final)
		if final || !errors.Is(err, errNotVisible) {
			return pos, replaced, err
		}
		bk.logger.Debug("catch up: reading the bucket again", "db", name, "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return local, false, fmt.Errorf("catch up %s: %w", name, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// catchUpOnce is one attempt of catchUp from one view of the bucket. Until
// the final attempt, a view that does not reach the head's TXID returns an
// error wrapping errNotVisible before anything is applied.
func (bk *Bucket) catchUpOnce(ctx context.Context, name string, applier ferry.Applier, local, verified ferry.Pos, final bool) (_ ferry.Pos, replaced bool, _ error) {
	files, err := bk.list(ctx, name)
	if err != nil {
		return local, false, fmt.Errorf("catch up %s: %w", name, err)
	}
	latest := files.maxTXID()
	if files.hasHead {
		latest = files.head.TXID
	}
	if latest == 0 {
		return local, false, nil
	}
	if local.TXID > latest {
		// A node ahead of the bucket holds history not uploaded yet. It
		// may extend the bucket's only if it passed through the bucket's
		// head: the same checksum at the head's TXID.
		if !files.hasHead {
			return local, false, nil // written by Litestream alone: no checksums to compare
		}
		diverged, reason, err := bk.divergesAhead(name, applier, files.head)
		if err != nil || !diverged {
			return local, false, err
		}
		return bk.replaceDiverged(ctx, name, applier, local, reason)
	}
	if local.TXID == latest {
		if files.hasHead && files.head.Checksum != local.PostApplyChecksum {
			reason := fmt.Sprintf("both at TXID %s, local checksum %s, bucket %s", latest, local.PostApplyChecksum, files.head.Checksum)
			return bk.replaceDiverged(ctx, name, applier, local, reason)
		}
		return local, false, nil
	}
	if local.IsZero() {
		pos, err := bk.catchUpFromScratch(ctx, name, applier)
		return pos, false, err
	}

	plan, err := bk.plan(ctx, files, local.TXID, planTarget{})
	if err != nil {
		return local, false, fmt.Errorf("catch up %s: %w", name, err)
	}
	reach := local.TXID
	if len(plan) > 0 {
		reach = plan[len(plan)-1].MaxTXID
	}
	// missing is what the bucket lacks beyond its newest object, which
	// may be in flight; it is reported once what there is is applied.
	var missing error
	if reach < latest {
		if !final {
			return local, false, fmt.Errorf("catch up %s: %w: objects reach TXID %s, the head %s", name, errNotVisible, reach, latest)
		}
		if !files.hasHead || reach+1 < files.head.LastMin {
			missing = fmt.Errorf("catch up %s: the bucket's objects after TXID %s are missing: they reach TXID %s, the head announces %s", name, local.TXID, reach, latest)
		}
		if len(plan) == 0 {
			return local, false, missing
		}
	}
	bufs := make([][]byte, len(plan))
	for i, fi := range plan {
		if bufs[i], err = bk.download(ctx, fi); err != nil {
			if errors.Is(err, ErrObjectNotFound) && !final {
				// Compaction or retention replaced it after the listing.
				err = fmt.Errorf("%w: %w", errNotVisible, err)
			}
			return local, false, fmt.Errorf("catch up %s: %w", name, err)
		}
	}
	// Where a file ends exactly at the local TXID its checksum must match;
	// where one starts right after, its pre-apply checksum must.
	first := plan[0]
	if first.MinTXID <= local.TXID && local != verified {
		// The file straddles the local position, so it says nothing about
		// the local TXID. Unless the node already knows its copy is on the
		// bucket's history, another object must prove it, or the copy is
		// replaced: commits this node made and never uploaded may differ
		// from the bucket's at the same TXIDs.
		sum, ok, err := bk.checksumAt(ctx, files, local.TXID)
		switch {
		case err != nil:
			return local, false, fmt.Errorf("catch up %s: %w", name, err)
		case !ok:
			reason := fmt.Sprintf("no object in the bucket shows its checksum at the local TXID %s, so nothing proves the local copy (checksum %s) is on the bucket's history", local.TXID, local.PostApplyChecksum)
			return bk.replaceDiverged(ctx, name, applier, local, reason)
		case sum != local.PostApplyChecksum:
			reason := fmt.Sprintf("at TXID %s the local checksum is %s, the bucket's %s", local.TXID, local.PostApplyChecksum, sum)
			return bk.replaceDiverged(ctx, name, applier, local, reason)
		}
	}
	if first.MinTXID == local.TXID+1 {
		dec := ltx.NewDecoder(bytes.NewReader(bufs[0]))
		if err := dec.DecodeHeader(); err != nil {
			return local, false, fmt.Errorf("catch up %s: object %s: %w", name, first.Key, err)
		}
		if h := dec.Header(); !h.NoChecksum() && h.PreApplyChecksum != local.PostApplyChecksum {
			reason := fmt.Sprintf("local checksum %s at TXID %s, the bucket's next change set expects %s", local.PostApplyChecksum, local.TXID, h.PreApplyChecksum)
			return bk.replaceDiverged(ctx, name, applier, local, reason)
		}
	}

	// Files of different page sizes cannot be merged: each run of one
	// page size is applied on its own, the first file of a later run
	// rewriting every page.
	hdrs := make([]ltx.Header, len(plan))
	for i, fi := range plan {
		if hdrs[i], _, err = ltx.PeekHeader(bytes.NewReader(bufs[i])); err != nil {
			return local, false, fmt.Errorf("catch up %s: object %s: %w", name, fi.Key, err)
		}
	}
	pos := local
	for _, run := range pageSizeRuns(plan, hdrs) {
		rplan, rbufs := make([]fileInfo, len(run)), make([][]byte, len(run))
		for j, i := range run {
			rplan[j], rbufs[j] = plan[i], bufs[i]
		}
		merged, err := mergeFrom(ctx, rplan, rbufs, pos)
		if err != nil {
			return pos, false, fmt.Errorf("catch up %s: %w", name, err)
		}
		next, err := applier.ApplyLTX(ctx, name, bytes.NewReader(merged))
		if err != nil {
			return pos, false, fmt.Errorf("catch up %s: apply %s-%s: %w", name, pos.TXID+1, rplan[len(rplan)-1].MaxTXID, err)
		}
		pos = next
	}
	return pos, false, missing
}

// How often catch-up reads the bucket when it does not show everything the
// head announces, and the first pause between reads, doubled each time
// (150 ms in all): long enough for an object PUT in flight to land.
const (
	viewAttempts  = 5
	viewRetryWait = 10 * time.Millisecond
)

// errNotVisible is returned by an attempt to catch up that saw a head
// announcing change sets its listing lacks, or an object vanish between
// the listing and its download.
var errNotVisible = errors.New("the bucket does not show every change set its head announces yet")

// mergeFrom merges plan's files into one LTX file that applies on top of
// the local position. Files may start before it: each holds every page
// changed since its start, a superset of those changed since the local
// position, so rewriting the header's start is sound.
func mergeFrom(ctx context.Context, plan []fileInfo, bufs [][]byte, local ferry.Pos) ([]byte, error) {
	// Compactor requires contiguous inputs. File boundaries line up across
	// levels (every level is built from L0 batches), so only the first
	// file can start before the local position.
	readers := make([]io.Reader, len(plan))
	for i := range plan {
		readers[i] = bytes.NewReader(bufs[i])
	}
	var merged bytes.Buffer
	c := ltx.NewCompactor(&merged, readers...)
	if err := c.Compact(ctx); err != nil {
		return nil, fmt.Errorf("merge %s..%s: %w", plan[0].Key, plan[len(plan)-1].Key, err)
	}
	hdr, trailer := c.Header(), c.Trailer()
	if hdr.MinTXID == local.TXID+1 {
		return merged.Bytes(), nil
	}
	// Re-encode with the local position as the start.
	dec := ltx.NewDecoder(bytes.NewReader(merged.Bytes()))
	if err := dec.DecodeHeader(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc, _ := ltx.NewEncoder(&out)
	h := dec.Header()
	h.MinTXID = local.TXID + 1
	h.PreApplyChecksum = local.PostApplyChecksum
	if h.NoChecksum() {
		h.PreApplyChecksum = 0
	}
	if err := enc.EncodeHeader(h); err != nil {
		return nil, err
	}
	data := make([]byte, h.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		if err := enc.EncodePage(ph, data); err != nil {
			return nil, err
		}
	}
	if err := dec.Close(); err != nil {
		return nil, err
	}
	if !h.NoChecksum() {
		enc.SetPostApplyChecksum(trailer.PostApplyChecksum)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// catchUpFromScratch rebuilds a database missing locally and applies it
// as one snapshot.
func (bk *Bucket) catchUpFromScratch(ctx context.Context, name string, applier ferry.Applier) (ferry.Pos, error) {
	var pos ferry.Pos
	err := bk.withSnapshot(ctx, name, func(f *os.File, at ferry.Pos) error {
		if cur, err := applier.LocalPos(name); err == nil && !cur.IsZero() {
			return fmt.Errorf("%w: the database was restored here meanwhile, at %s", errNotVisible, cur)
		}
		var err error
		if pos, err = applier.ApplyLTX(ctx, name, f); err != nil {
			return fmt.Errorf("apply snapshot at %s: %w", at.TXID, err)
		}
		return nil
	})
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	return pos, nil
}

// withSnapshot restores database name's newest state from the bucket into
// a temporary LTX snapshot and calls fn with it open.
func (bk *Bucket) withSnapshot(ctx context.Context, name string, fn func(f *os.File, pos ferry.Pos) error) error {
	dir, err := os.MkdirTemp("", "ferry-catchup-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "db")
	res, err := bk.restore(ctx, name, dbPath, RestoreOptions{})
	if err != nil {
		return err
	}
	ltxPath := filepath.Join(dir, "snapshot.ltx")
	if err := encodeSnapshot(ctx, dbPath, ltxPath, res); err != nil {
		return err
	}
	f, err := os.Open(ltxPath)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(f, res.pos)
}
