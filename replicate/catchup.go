package replicate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
// reached; an error wrapping ErrConflict means the local history differs
// from the bucket's and the local copy must be restored from scratch.
func (r *Replicator) CatchUp(ctx context.Context, name string, applier ferry.Applier) (ferry.Pos, error) {
	pos, err := r.bucket.CatchUp(ctx, name, applier)
	if err != nil {
		return pos, err
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
	local, err := applier.LocalPos(name)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	files, err := bk.list(ctx, name)
	if err != nil {
		return local, fmt.Errorf("catch up %s: %w", name, err)
	}
	latest := files.maxTXID()
	if files.hasHead {
		latest = files.head.TXID
	}
	if latest == 0 || local.TXID > latest {
		// Nothing newer in the bucket. A node ahead of it holds history
		// not uploaded yet; the upload's checksum check decides whether
		// that history continues the bucket's.
		return local, nil
	}
	if local.TXID == latest {
		if files.hasHead && files.head.Checksum != local.PostApplyChecksum {
			return local, fmt.Errorf("catch up %s: %w: both at TXID %s, local checksum %s, bucket %s", name, ErrConflict, latest, local.PostApplyChecksum, files.head.Checksum)
		}
		return local, nil
	}
	if local.IsZero() {
		return bk.catchUpFromScratch(ctx, name, applier)
	}

	plan, err := bk.plan(ctx, files, local.TXID, planTarget{})
	if err != nil {
		return local, fmt.Errorf("catch up %s: %w", name, err)
	}
	if len(plan) == 0 || plan[len(plan)-1].MaxTXID < latest {
		return local, fmt.Errorf("catch up %s: %w: the bucket no longer holds the change sets after local TXID %s; restore the database from scratch", name, ErrConflict, local.TXID)
	}
	bufs := make([][]byte, len(plan))
	for i, fi := range plan {
		if bufs[i], err = bk.download(ctx, fi); err != nil {
			return local, fmt.Errorf("catch up %s: %w", name, err)
		}
	}
	// Where a file ends exactly at the local TXID its checksum must match;
	// where one starts right after, its pre-apply checksum must.
	first := plan[0]
	if first.MinTXID == local.TXID+1 {
		dec := ltx.NewDecoder(bytes.NewReader(bufs[0]))
		if err := dec.DecodeHeader(); err != nil {
			return local, fmt.Errorf("catch up %s: object %s: %w", name, first.Key, err)
		}
		if h := dec.Header(); !h.NoChecksum() && h.PreApplyChecksum != local.PostApplyChecksum {
			return local, fmt.Errorf("catch up %s: %w: local checksum %s at TXID %s, bucket expects %s", name, ErrConflict, local.PostApplyChecksum, local.TXID, h.PreApplyChecksum)
		}
	}

	merged, err := mergeFrom(ctx, plan, bufs, local)
	if err != nil {
		return local, fmt.Errorf("catch up %s: %w", name, err)
	}
	pos, err := applier.ApplyLTX(ctx, name, bytes.NewReader(merged))
	if err != nil {
		return local, fmt.Errorf("catch up %s: apply %s-%s: %w", name, local.TXID+1, plan[len(plan)-1].MaxTXID, err)
	}
	return pos, nil
}

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
	dir, err := os.MkdirTemp("", "ferry-catchup-*")
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "db")
	res, err := bk.restore(ctx, name, dbPath, RestoreOptions{})
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	ltxPath := filepath.Join(dir, "snapshot.ltx")
	if err := encodeSnapshot(ctx, dbPath, ltxPath, res); err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	f, err := os.Open(ltxPath)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: %w", name, err)
	}
	defer f.Close()
	pos, err := applier.ApplyLTX(ctx, name, f)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("catch up %s: apply snapshot at %s: %w", name, res.pos.TXID, err)
	}
	return pos, nil
}
