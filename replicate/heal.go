package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// Healing damaged objects. An object whose checksum fails (bit rot, a
// truncated copy, an operator's mistake) blocks every compaction and
// restore that passes through it. The writer still holds the change sets
// in its local log for a while after uploading them, so when compaction or
// a snapshot finds such an object it rebuilds it from the log and replaces
// it. It replaces only the exact version it found damaged (If-Match on its
// ETag), and only with a file that verifies and continues into the rest of
// the bucket's history, so a replacement can never change history: it is
// the same change sets, intact. An object it cannot rebuild is reported
// once and then left alone, retried only after a growing pause.

// Bounds on how an object that cannot be rebuilt is retried and remembered.
const (
	damageRetryMin = time.Minute
	damageRetryMax = time.Hour
	// maxDamaged bounds the damaged objects remembered per database; when
	// more are found the one due soonest is forgotten, and at worst
	// reported again.
	maxDamaged = 64
)

// damagedObject is an object found damaged that could not be rebuilt.
type damagedObject struct {
	retryAt time.Time     // when to look at it again
	wait    time.Duration // the pause before retryAt
}

// objectError is an error about the content of one bucket object, as
// opposed to the bucket being unreachable: the object is damaged.
type objectError struct {
	key string
	err error
}

func (e *objectError) Error() string { return fmt.Sprintf("object %s: %v", e.key, e.err) }

func (e *objectError) Unwrap() error { return e.err }

// damageWait reports whether key was found damaged and beyond repair
// recently enough that compactions and snapshots should not try it again
// yet. The caller holds db.mu.
func (r *Replicator) damageWait(db *database, key string) bool {
	d := db.damaged[key]
	return d != nil && r.opts.Now().Before(d.retryAt)
}

// anyDamageWait reports whether some object of db is waiting for a retry.
// The caller holds db.mu.
func (r *Replicator) anyDamageWait(db *database) bool {
	for key := range db.damaged {
		if r.damageWait(db, key) {
			return true
		}
	}
	return false
}

// markDamaged records that key is damaged and cannot be rebuilt. It logs
// an error the first time only; each later failure doubles the pause
// before the next attempt. The caller holds db.mu.
func (r *Replicator) markDamaged(db *database, key string, cause, why error) {
	now := r.opts.Now()
	if d := db.damaged[key]; d != nil {
		d.wait = min(2*d.wait, damageRetryMax)
		d.retryAt = now.Add(d.wait)
		r.opts.Logger.Debug("bucket object still damaged", "db", db.name, "key", key, "retry", d.wait)
		return
	}
	if db.damaged == nil {
		db.damaged = map[string]*damagedObject{}
	}
	if len(db.damaged) >= maxDamaged {
		var soonest string
		for k, d := range db.damaged {
			if soonest == "" || d.retryAt.Before(db.damaged[soonest].retryAt) {
				soonest = k
			}
		}
		delete(db.damaged, soonest)
	}
	db.damaged[key] = &damagedObject{retryAt: now.Add(damageRetryMin), wait: damageRetryMin}
	r.opts.Logger.Error("bucket object is damaged and cannot be rebuilt from the local log; restores that need it fail until it is replaced",
		"db", db.name, "key", key, "err", cause, "reason", why)
}

// healInputs checks each object of a failed compaction or restore and
// rebuilds the damaged ones. It returns how many it rebuilt and how many
// it found damaged in all; neither counts objects that are intact. The
// caller holds db.mu.
func (r *Replicator) healInputs(ctx context.Context, db *database, files []fileInfo) (healed, damaged int, err error) {
	for _, fi := range files {
		cause, etag, err := r.checkObject(ctx, fi)
		if err != nil {
			return healed, damaged, err
		}
		if cause == nil {
			delete(db.damaged, fi.Key)
			continue
		}
		damaged++
		ok, why, err := r.rebuildObject(ctx, db, fi, etag)
		if err != nil {
			return healed, damaged, err
		}
		if !ok {
			r.markDamaged(db, fi.Key, cause, why)
			continue
		}
		delete(db.damaged, fi.Key)
		healed++
		r.opts.Logger.Warn("rebuilt a damaged bucket object from the local log", "db", db.name, "key", fi.Key, "damage", cause)
	}
	return healed, damaged, nil
}

// healAfter looks for the damaged object that err names, if any, and
// rebuilds it. It reports whether it rebuilt one, so that the caller may
// try again. The caller holds db.mu.
func (r *Replicator) healAfter(ctx context.Context, db *database, err error) bool {
	var oe *objectError
	if !errors.As(err, &oe) || db.files == nil {
		return false
	}
	for _, lv := range db.files.levels {
		for _, fi := range lv {
			if fi.Key != oe.key {
				continue
			}
			healed, _, herr := r.healInputs(ctx, db, []fileInfo{fi})
			if herr != nil {
				r.opts.Logger.Warn("cannot check a damaged bucket object", "db", db.name, "key", fi.Key, "err", herr)
			}
			return healed > 0
		}
	}
	return false
}

// checkObject downloads fi and verifies it. damage is nil when the object
// is intact; err is set only when the bucket could not be read. etag is
// the version that was checked.
func (r *Replicator) checkObject(ctx context.Context, fi fileInfo) (damage error, etag string, err error) {
	rc, info, err := r.bucket.backend.Get(ctx, fi.Key)
	if err != nil {
		return nil, "", fmt.Errorf("check %s: %w", fi.Key, err)
	}
	defer rc.Close()
	sp := &spool{}
	defer sp.Close()
	if _, err := io.Copy(sp, rc); err != nil {
		return nil, "", fmt.Errorf("check %s: %w", fi.Key, err)
	}
	body, err := sp.Reader()
	if err != nil {
		return nil, "", err
	}
	dec := ltx.NewDecoder(body)
	if err := dec.Verify(); err != nil {
		return err, info.ETag, nil
	}
	if h := dec.Header(); h.MinTXID != fi.MinTXID || h.MaxTXID != fi.MaxTXID {
		return fmt.Errorf("%w: header covers %s-%s", ltx.ErrInvalidFile, h.MinTXID, h.MaxTXID), info.ETag, nil
	}
	return nil, info.ETag, nil
}

// rebuildObject rebuilds the damaged object fi from the local log and
// replaces the version etag with it. ok is false, with the reason in why,
// when the local log cannot rebuild it or the object changed meanwhile;
// err is set only when the bucket could not be reached.
func (r *Replicator) rebuildObject(ctx context.Context, db *database, fi fileInfo, etag string) (ok bool, why, err error) {
	if fi.Level == SnapshotLevel {
		return false, errors.New("snapshots are not rebuilt from the local log"), nil
	}
	local, err := r.localFiles(db.name)
	if err != nil {
		return false, nil, err
	}
	var batch []localFile
	for _, f := range local {
		if f.MinTXID >= fi.MinTXID && f.MaxTXID <= fi.MaxTXID {
			batch = append(batch, f)
		}
	}
	if len(batch) == 0 || batch[0].MinTXID != fi.MinTXID || batch[len(batch)-1].MaxTXID != fi.MaxTXID {
		return false, fmt.Errorf("the local log does not hold TXIDs %s-%s in files of their own", fi.MinTXID, fi.MaxTXID), nil
	}
	for i := 1; i < len(batch); i++ {
		if batch[i].MinTXID != batch[i-1].MaxTXID+1 {
			return false, fmt.Errorf("the local log has a gap after TXID %s", batch[i-1].MaxTXID), nil
		}
	}
	data, hdr, trailer, err := compactLocal(ctx, batch)
	if err != nil {
		return false, err, nil
	}
	defer data.Close()
	if why := r.continuesBucket(ctx, db, fi, trailer.PostApplyChecksum); why != nil {
		return false, why, nil
	}
	body, err := data.Reader()
	if err != nil {
		return false, nil, err
	}
	opts := PutOptions{IfMatch: etag, Metadata: map[string]string{
		"litestream-timestamp": time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano),
	}}
	if _, err := r.bucket.backend.Put(ctx, fi.Key, body, data.Size(), opts); errors.Is(err, ErrPreconditionFailed) || errors.Is(err, ErrObjectNotFound) {
		return false, fmt.Errorf("the object changed while it was rebuilt: %w", err), nil
	} else if err != nil {
		return false, nil, fmt.Errorf("rebuild %s: %w", fi.Key, err)
	}
	return true, nil, nil
}

// continuesBucket checks that a local copy of fi, ending with checksum
// post, is the bucket's history: the head or the next object in the bucket
// must start from post. It returns why not, or nil.
func (r *Replicator) continuesBucket(ctx context.Context, db *database, fi fileInfo, post ltx.Checksum) error {
	h := db.files.head
	if db.files.hasHead && h.TXID == fi.MaxTXID {
		if h.Checksum != post {
			return fmt.Errorf("the local log has checksum %s at TXID %s, the bucket's head %s", post, fi.MaxTXID, h.Checksum)
		}
		return nil
	}
	for l := 0; l < SnapshotLevel; l++ {
		for _, next := range db.files.levels[l] {
			if next.MinTXID != fi.MaxTXID+1 || db.damaged[next.Key] != nil {
				continue
			}
			pre, err := r.preApplyChecksum(ctx, next)
			if err != nil {
				continue
			}
			if pre != post {
				return fmt.Errorf("the local log has checksum %s at TXID %s, the bucket's %s continues from %s", post, fi.MaxTXID, next.Key, pre)
			}
			return nil
		}
	}
	return fmt.Errorf("no object in the bucket follows TXID %s to check the local log against", fi.MaxTXID)
}

// preApplyChecksum reads the pre-apply checksum from an object's header.
func (r *Replicator) preApplyChecksum(ctx context.Context, fi fileInfo) (ltx.Checksum, error) {
	rc, _, err := r.bucket.backend.Get(ctx, fi.Key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(io.LimitReader(rc, ltx.HeaderSize))
	if err := dec.DecodeHeader(); err != nil {
		return 0, fmt.Errorf("object %s: %w", fi.Key, err)
	}
	return dec.Header().PreApplyChecksum, nil
}

// compactFailed handles a compaction whose inputs could not be merged:
// damaged inputs are rebuilt from the local log, or set aside for a while
// if they cannot be, and the compaction runs again at its next boundary
// rather than failing on every interval. It returns err when no input was
// damaged. The caller holds db.mu.
func (r *Replicator) compactFailed(ctx context.Context, db *database, inputs []fileInfo, err error) error {
	_, damaged, herr := r.healInputs(ctx, db, inputs)
	if herr != nil {
		return errors.Join(err, herr)
	}
	if damaged == 0 {
		return err
	}
	return nil
}
