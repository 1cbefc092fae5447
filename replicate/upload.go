package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// Upload protocol. Every database has a head object recording the newest
// TXID in the bucket, its checksum, and the epoch of the lease under which
// it was written. An upload of TXIDs min..max:
//
//  1. asks the WriteGuard for the lease epoch, and refuses to go on if the
//     head carries a newer one;
//  2. checks that the batch continues the head exactly: min is the head's
//     TXID + 1 and the batch's pre-apply checksum is the head's checksum;
//  3. replaces the head with If-Match on the ETag it last saw (If-None-Match
//     for the first upload). This is the commit point: of two writers that
//     race, exactly one wins, and the loser has written nothing;
//  4. writes the L0 object with If-None-Match, so it never replaces one.
//
// Writing the head first means a stale writer is refused before it adds
// any object that a restore, Ferry's or Litestream's, could pick up. The
// price is that a crash between steps 3 and 4 leaves the head announcing a
// file that is not there yet; the same node writes it on its next attempt
// (its local log keeps the files), and a new writer waits PendingGrace for
// it before rolling the head back to the newest file that exists.

// Errors reported by uploads. Callers match them with errors.Is.
var (
	// ErrConflict is returned when the bucket's history of a database does
	// not continue from this node's: another writer advanced it, or this
	// node's local history diverged from it.
	ErrConflict = errors.New("bucket history conflicts with local history")

	// ErrBehind is returned when the bucket holds newer change sets than
	// this node: it must catch up (CatchUp) before it writes.
	ErrBehind = errors.New("local database is behind the bucket")
)

// upload ships db's pending local LTX files in batches.
func (r *Replicator) upload(ctx context.Context, db *database) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := r.load(ctx, db); err != nil {
		// Still show the backlog, counted from the last recorded position.
		if local, lerr := r.localFiles(db.name); lerr == nil {
			r.setBacklog(db, pendingFiles(local, r.readBucketPos(db.name).TXID))
		}
		return err
	}
	if !db.logChecked {
		if err := r.fillGaps(ctx, db); err != nil {
			r.opts.Logger.Error("local LTX log has a gap", "db", db.name, "err", err)
		}
	}
	reloads := 0
	var target ltx.TXID
	for round := 0; ; round++ {
		if round > 1<<16 {
			return fmt.Errorf("upload %s: no progress after %d rounds", db.name, round)
		}
		local, err := r.localFiles(db.name)
		if err != nil {
			return err
		}
		pending := pendingFiles(local, db.files.head.TXID)
		r.setBacklog(db, pending)
		// Upload only what was pending when this sync began: files that
		// arrive meanwhile wait for the next interval, so that a busy
		// database costs one upload per interval, not one per commit.
		if target == 0 && len(pending) > 0 {
			target = pending[len(pending)-1].MaxTXID
		}
		for len(pending) > 0 && pending[len(pending)-1].MaxTXID > target {
			pending = pending[:len(pending)-1]
		}

		if len(pending) > 0 && r.opts.Streamed != nil && r.opts.Streamed(db.name) {
			return nil
		}
		if db.needObject {
			if err := r.putAnnounced(ctx, db, local); err != nil {
				return err
			}
		}
		if len(pending) == 0 {
			if r.headContradictsLocal(db, local) {
				h := db.files.head
				return r.stale(db, fmt.Errorf("upload %s: %w: the bucket's TXID %s (epoch %d) has checksum %s, this node's differs", db.name, ErrConflict, h.TXID, h.Epoch, h.Checksum))
			}
			if !r.headHidesLocal(db, local) {
				return nil
			}
			// The head claims TXIDs this node has different history for:
			// a writer before this one announced a file it never stored.
			// uploadBatch settles that before anything is written.
			pending = pendingFiles(local, db.files.head.LastMin-1)
		}
		if len(pending) > r.opts.MaxBatchFiles {
			pending = pending[:r.opts.MaxBatchFiles]
		}
		if pending, err = samePageSize(pending); err != nil {
			return fmt.Errorf("upload %s: %w", db.name, err)
		}
		err = r.uploadBatch(ctx, db, pending)
		if errors.Is(err, errReadOnly) {
			return nil
		}
		if errors.Is(err, errHeadReloaded) && reloads < 3 {
			reloads++
			if err := r.load(ctx, db); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
}

// headHidesLocal reports whether the bucket's head announces a file that
// is missing and that covers the end of the local log, which this node
// did not write: the previous writer died mid-upload, and this node's
// newest transactions reuse the TXIDs it announced.
func (r *Replicator) headHidesLocal(db *database, local []localFile) bool {
	h := db.files.head
	if !db.needObject || db.wrote || len(local) == 0 || h.TXID == 0 {
		return false
	}
	last := local[len(local)-1].MaxTXID
	return last >= h.LastMin && !(last == h.TXID && r.ownHead(db.name, h))
}

// headContradictsLocal reports whether the bucket's head, which this node
// did not write, ends at the same TXID as the local log but with another
// checksum: another writer won the race for that TXID.
func (r *Replicator) headContradictsLocal(db *database, local []localFile) bool {
	h := db.files.head
	if db.wrote || db.needObject || len(local) == 0 || h.TXID == 0 {
		return false
	}
	return local[len(local)-1].MaxTXID == h.TXID && !r.ownHead(db.name, h)
}

// errReadOnly ends an upload round quietly on a node that may not write.
var errReadOnly = errors.New("read-only")

// errHeadReloaded makes upload start over from a freshly read head.
var errHeadReloaded = errors.New("bucket head reloaded")

// ownHead reports whether h matches this node's local history: the local
// file ending at h's TXID has h's checksum.
func (r *Replicator) ownHead(name string, h head) bool {
	local, err := r.localFiles(name)
	if err != nil {
		return false
	}
	for _, f := range local {
		if f.MaxTXID != h.TXID {
			continue
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return false
		}
		dec := ltx.NewDecoder(bytes.NewReader(data))
		if err := dec.Verify(); err != nil {
			return false
		}
		return dec.Trailer().PostApplyChecksum == h.Checksum
	}
	return false
}

// load reads db's bucket state the first time it is needed.
func (r *Replicator) load(ctx context.Context, db *database) error {
	if db.files != nil {
		return nil
	}
	files, err := r.bucket.list(ctx, db.name)
	if err != nil {
		return err
	}
	db.files = files
	// The head just read may be another node's; this node is the known
	// writer again only once it advances the head itself.
	db.wrote = false
	now := r.opts.Now()
	for l := range db.lastRun {
		db.lastRun[l] = now
	}
	if snaps := files.levels[SnapshotLevel]; len(snaps) > 0 {
		db.lastRun[SnapshotLevel] = time.UnixMilli(snaps[len(snaps)-1].CreatedAt)
	}
	if files.hasHead && files.head.TXID > 0 {
		db.needObject = !files.holds(files.head.TXID)
		r.setBucketHead(db, ferry.Pos{TXID: files.head.TXID, PostApplyChecksum: files.head.Checksum}, files.head.Time)
	}
	return nil
}

// pendingFiles returns the local files after the bucket's TXID.
func pendingFiles(local []localFile, after ltx.TXID) []localFile {
	for i, f := range local {
		if f.MaxTXID > after {
			return local[i:]
		}
	}
	return nil
}

// uploadBatch uploads one batch of contiguous local files as one L0 file.
func (r *Replicator) uploadBatch(ctx context.Context, db *database, batch []localFile) error {
	epoch, err := r.checkWrite(ctx, db.name)
	if errors.Is(err, ferry.ErrReadOnly) {
		// Another node writes this database and uploads it; this node's
		// files came from it. Reread the bucket next time.
		r.opts.Logger.Debug("not uploading: database is read-only here", "db", db.name)
		db.readOnly = true
		db.files = nil
		return errReadOnly
	}
	if err != nil {
		return err
	}
	db.readOnly = false
	h := db.files.head
	if db.files.hasHead && h.Epoch > epoch {
		return r.stale(db, fmt.Errorf("upload %s: %w: bucket head has epoch %d, this node holds %d", db.name, ferry.ErrStaleEpoch, h.Epoch, epoch))
	}
	if db.files.hasHead && h.Epoch < epoch {
		// First upload under a new lease: the head may be stale in memory,
		// and the previous writer may have left an announced file missing.
		db.files = nil
		if err := r.load(ctx, db); err != nil {
			return err
		}
		if err := r.settleTakeover(ctx, db); err != nil {
			return err
		}
		h = db.files.head
		if h.Epoch > epoch {
			return r.stale(db, fmt.Errorf("upload %s: %w: bucket head has epoch %d, this node holds %d", db.name, ferry.ErrStaleEpoch, h.Epoch, epoch))
		}
		batch = pendingFiles(batch, h.TXID)
		if len(batch) == 0 {
			return nil
		}
	}

	first, last := batch[0], batch[len(batch)-1]
	switch {
	case first.MinTXID > h.TXID+1:
		return r.stale(db, fmt.Errorf("upload %s: %w: local log starts at %s but the bucket ends at %s", db.name, ErrConflict, first.MinTXID, h.TXID))
	case first.MinTXID <= h.TXID:
		return r.stale(db, fmt.Errorf("upload %s: %w: local file %s-%s straddles the bucket's TXID %s", db.name, ErrConflict, first.MinTXID, first.MaxTXID, h.TXID))
	}
	for i := 1; i < len(batch); i++ {
		if batch[i].MinTXID != batch[i-1].MaxTXID+1 {
			return fmt.Errorf("upload %s: local log has a gap between %s and %s", db.name, batch[i-1].MaxTXID, batch[i].MinTXID)
		}
	}

	data, hdr, trailer, err := compactLocal(ctx, batch)
	if err != nil {
		return fmt.Errorf("upload %s: %w", db.name, err)
	}
	defer data.Close()
	if h.TXID > 0 && !hdr.NoChecksum() && hdr.PreApplyChecksum != h.Checksum {
		return r.stale(db, fmt.Errorf("upload %s: %w: local TXID %s follows checksum %s, the bucket has %s", db.name, ErrConflict, hdr.MinTXID, hdr.PreApplyChecksum, h.Checksum))
	}

	next := head{TXID: last.MaxTXID, Checksum: trailer.PostApplyChecksum, Epoch: epoch, LastMin: first.MinTXID, Node: r.opts.Node, Mode: r.fileMode(db.name, h.Mode), Time: hdr.Timestamp}
	if next.PageSize, next.PageSizeSince, err = r.nextPageSize(ctx, db, first.MinTXID, hdr.PageSize); err != nil {
		return fmt.Errorf("upload %s: %w", db.name, err)
	}
	if err := r.advanceHead(ctx, db, next); err != nil {
		return err
	}
	db.needObject = true
	if err := r.storeL0(ctx, db, first.MinTXID, ferry.Pos{TXID: last.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}, data, hdr); err != nil {
		return err
	}
	if next.PageSizeSince == first.MinTXID {
		// The page size changed: until the snapshot exists, stock tools
		// cannot restore past this batch. Maintenance retries a failure.
		if err := r.changeSnapshot(ctx, db); err != nil {
			r.opts.Logger.Warn("snapshot after a change of page size failed; retrying later", "db", db.name, "err", err)
		}
	}
	return nil
}

// storeL0 writes the L0 object covering min through pos.TXID, whose head
// is already in place, and records pos as the bucket's position.
func (r *Replicator) storeL0(ctx context.Context, db *database, min ltx.TXID, pos ferry.Pos, data *spool, hdr ltx.Header) error {
	key := r.bucket.keys.ltx(db.name, 0, min, pos.TXID)
	if err := r.putLTX(ctx, key, data, hdr); err != nil {
		return fmt.Errorf("upload %s: %w", db.name, err)
	}
	db.needObject = false
	db.files.add(fileInfo{Level: 0, MinTXID: min, MaxTXID: pos.TXID, Size: data.Size(), CreatedAt: r.opts.Now().UnixMilli(), Key: key})
	r.counters.txns.Add(int64(pos.TXID - min + 1))
	r.setBucketHead(db, pos, hdr.Timestamp)
	if err := r.writeBucketPos(db.name, pos); err != nil {
		return fmt.Errorf("upload %s: record bucket position: %w", db.name, err)
	}
	return nil
}

// advanceHead replaces db's head with next, conditional on the head being
// the one last seen.
func (r *Replicator) advanceHead(ctx context.Context, db *database, next head) error {
	key := r.bucket.keys.head(db.name)
	etag, err := writeHead(ctx, r.bucket.backend, key, next, db.files.headETag)
	if errors.Is(err, ErrPreconditionFailed) {
		cur, curETag, ok, rerr := readHead(ctx, r.bucket.backend, key)
		if rerr != nil {
			return fmt.Errorf("upload %s: head changed and cannot be reread: %w", db.name, rerr)
		}
		if ok && cur == next {
			// Our own earlier write landed but its reply was lost.
			etag, err = curETag, nil
		} else if ok && cur.Epoch == next.Epoch && r.ownHead(db.name, cur) {
			// An earlier write of ours landed although it was reported as
			// failed (a cancelled request, say). Start over from it.
			db.files = nil
			return errHeadReloaded
		} else {
			db.files = nil // reload the bucket's view next time
			if ok && cur.Epoch > next.Epoch {
				return r.stale(db, fmt.Errorf("upload %s: %w: another writer holds epoch %d (this node %d) and is at TXID %s", db.name, ferry.ErrStaleEpoch, cur.Epoch, next.Epoch, cur.TXID))
			}
			return r.stale(db, fmt.Errorf("upload %s: %w: the bucket head moved to TXID %s (epoch %d) while this node wrote %s-%s", db.name, ErrConflict, cur.TXID, cur.Epoch, next.LastMin, next.TXID))
		}
	}
	if err != nil {
		// The write may still have landed: reread the bucket next time.
		db.files = nil
		return fmt.Errorf("upload %s: %w", db.name, err)
	}
	db.files.head, db.files.headETag, db.files.hasHead = next, etag, true
	db.wrote, db.epoch = true, next.Epoch
	return nil
}

// stale counts and logs an upload refused because the bucket's history is
// not this node's to extend, and returns err.
func (r *Replicator) stale(db *database, err error) error {
	r.counters.stale.Add(1)
	r.opts.Logger.Error("upload refused: this node is not the current writer", "db", db.name, "err", err)
	return err
}

// putLTX writes an LTX object that must not exist yet. If it does exist
// with the same content (a retry after a lost reply) that is success.
func (r *Replicator) putLTX(ctx context.Context, key string, data *spool, hdr ltx.Header) error {
	opts := PutOptions{
		IfNoneMatch: true,
		// Litestream reads this to restore to a timestamp without
		// downloading each file.
		Metadata: map[string]string{"litestream-timestamp": time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano)},
	}
	body, err := data.Reader()
	if err != nil {
		return err
	}
	_, err = r.bucket.backend.Put(ctx, key, body, data.Size(), opts)
	if !errors.Is(err, ErrPreconditionFailed) {
		return err
	}
	rc, _, gerr := r.bucket.backend.Get(ctx, key)
	if gerr != nil {
		return fmt.Errorf("%w (and rereading it failed: %v)", err, gerr)
	}
	defer rc.Close()
	same, gerr := data.sameContent(rc)
	if gerr != nil {
		return fmt.Errorf("%w (and rereading it failed: %v)", err, gerr)
	}
	if !same {
		return fmt.Errorf("%w: %s exists with different content", ErrConflict, key)
	}
	return nil
}

// putAnnounced writes the L0 file that db's head announces but that this
// node has not stored yet, from the local log.
func (r *Replicator) putAnnounced(ctx context.Context, db *database, local []localFile) error {
	h := db.files.head
	if db.files.holds(h.TXID) {
		db.needObject = false
		return nil
	}
	var batch []localFile
	for _, f := range local {
		if f.MinTXID >= h.LastMin && f.MaxTXID <= h.TXID {
			batch = append(batch, f)
		}
	}
	if len(batch) == 0 || batch[0].MinTXID != h.LastMin || batch[len(batch)-1].MaxTXID != h.TXID {
		// Another node announced it; settleTakeover deals with that.
		return nil
	}
	// Only the writer that announced the file may still write it: once a
	// newer lease exists, the new writer may already have rolled the head
	// back and written other files over that range. This node under a
	// newer epoch is that writer restarted (a static lease's epoch rises
	// at every start): nobody else will store the file, and waiting for
	// itself would hold uploads back for PendingGrace. It stores the file
	// even without the lease: the head it just read still announces this
	// node's file, the new writer waits PendingGrace for exactly this
	// before rolling the head back, and the object is written only if
	// absent, so nothing another writer stored is replaced.
	own := h.Node != "" && h.Node == r.opts.Node
	epoch, err := r.checkWrite(ctx, db.name)
	switch {
	case err != nil && !(own && errors.Is(err, ferry.ErrReadOnly)):
		return err
	case err == nil && epoch != h.Epoch && !(epoch > h.Epoch && own):
		return nil
	}
	data, hdr, trailer, err := compactLocal(ctx, batch)
	if err != nil {
		return fmt.Errorf("upload %s: %w", db.name, err)
	}
	defer data.Close()
	if trailer.PostApplyChecksum != h.Checksum {
		return r.stale(db, fmt.Errorf("upload %s: %w: local TXID %s has checksum %s, the head announced %s", db.name, ErrConflict, h.TXID, trailer.PostApplyChecksum, h.Checksum))
	}
	return r.storeL0(ctx, db, h.LastMin, ferry.Pos{TXID: h.TXID, PostApplyChecksum: h.Checksum}, data, hdr)
}

// settleTakeover runs when this node first uploads under a newer epoch
// than the head's. If the head announces a file that is not in the bucket,
// the previous writer died mid-upload: wait PendingGrace for it, then roll
// the head back to the newest file that exists.
func (r *Replicator) settleTakeover(ctx context.Context, db *database) error {
	h := db.files.head
	if h.TXID == 0 {
		return nil
	}
	if db.files.holds(h.TXID) {
		db.pendingSince = time.Time{}
		return nil
	}
	now := r.opts.Now()
	if db.pendingSince.IsZero() {
		db.pendingSince = now
	}
	if now.Sub(db.pendingSince) < r.opts.PendingGrace {
		return fmt.Errorf("upload %s: waiting up to %s for the previous writer's announced file %s-%s", db.name, r.opts.PendingGrace, h.LastMin, h.TXID)
	}
	// Roll back to the newest contiguous file below the missing one.
	var best fileInfo
	for _, lv := range db.files.levels {
		for _, fi := range lv {
			if fi.MaxTXID < h.LastMin && fi.MaxTXID > best.MaxTXID {
				best = fi
			}
		}
	}
	back := head{Epoch: h.Epoch, Node: h.Node, Mode: h.Mode}
	if best.MaxTXID > 0 {
		data, err := r.bucket.download(ctx, best)
		if err != nil {
			return err
		}
		dec := ltx.NewDecoder(bytes.NewReader(data))
		if err := dec.Verify(); err != nil {
			return fmt.Errorf("object %s: %w", best.Key, err)
		}
		back.TXID, back.Checksum, back.LastMin = best.MaxTXID, dec.Trailer().PostApplyChecksum, best.MinTXID
		back.PageSize, back.Time = dec.Header().PageSize, dec.Header().Timestamp
		if h.PageSizeSince <= back.TXID {
			back.PageSizeSince = h.PageSizeSince
		}
	}
	r.opts.Logger.Warn("previous writer's upload never arrived; rolling the bucket head back",
		"db", db.name, "announced", h.TXID, "to", back.TXID)
	if err := r.advanceHead(ctx, db, back); err != nil {
		return err
	}
	db.pendingSince = time.Time{}
	return ErrBehind
}

// checkWrite returns the lease epoch to upload under.
func (r *Replicator) checkWrite(ctx context.Context, name string) (uint64, error) {
	if r.opts.Guard == nil {
		return 0, nil
	}
	epoch, err := r.opts.Guard.CheckWrite(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", name, err)
	}
	return epoch, nil
}

// compactLocal merges contiguous local LTX files into one file, verifying
// each. The caller closes the spool.
func compactLocal(ctx context.Context, batch []localFile) (*spool, ltx.Header, ltx.Trailer, error) {
	fail := func(err error) (*spool, ltx.Header, ltx.Trailer, error) { return nil, ltx.Header{}, ltx.Trailer{}, err }
	files := make([]*os.File, 0, len(batch))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	readers := make([]io.Reader, 0, len(batch))
	for _, lf := range batch {
		f, err := os.Open(lf.Path)
		if err != nil {
			return fail(fmt.Errorf("open local LTX file: %w", err))
		}
		files = append(files, f)
		readers = append(readers, f)
	}
	out := &spool{}
	if len(batch) == 1 {
		// Copy as is, verifying on the way.
		dec := ltx.NewDecoder(io.TeeReader(readers[0], out))
		if err := dec.Verify(); err != nil {
			out.Close()
			return fail(fmt.Errorf("local file %s: %w", batch[0].Path, err))
		}
		return out, dec.Header(), dec.Trailer(), nil
	}
	c := ltx.NewCompactor(out, readers...)
	if err := c.Compact(ctx); err != nil {
		out.Close()
		return fail(fmt.Errorf("merge local files %s-%s: %w", batch[0].MinTXID, batch[len(batch)-1].MaxTXID, err))
	}
	return out, c.Header(), c.Trailer(), nil
}

// setBacklog records how much is waiting to be uploaded.
func (r *Replicator) setBacklog(db *database, pending []localFile) {
	var n int64
	for _, f := range pending {
		n += f.Size
	}
	db.statMu.Lock()
	db.backlog, db.backlogBytes = len(pending), n
	db.statMu.Unlock()
}

// setBucketPos records the bucket's position for Stats and BucketPos.
func (r *Replicator) setBucketPos(db *database, pos ferry.Pos) {
	db.statMu.Lock()
	db.bucketPos = pos
	db.statMu.Unlock()
}

// setBucketHead records the bucket's position and the commit time of the
// change set at it (milliseconds since the Unix epoch; zero: unknown).
func (r *Replicator) setBucketHead(db *database, pos ferry.Pos, commitMS int64) {
	db.statMu.Lock()
	db.bucketPos = pos
	if commitMS != 0 {
		db.bucketTime, db.bucketTimeTXID = time.UnixMilli(commitMS), pos.TXID
	}
	db.statMu.Unlock()
}

// fileMode returns the permission bits of database name's local file, for
// restores elsewhere to use, or old when the file cannot be read.
func (r *Replicator) fileMode(name string, old uint32) uint32 {
	fi, err := os.Stat(r.layout.DBPath(name))
	if err != nil {
		return old
	}
	return uint32(fi.Mode().Perm())
}
