package replicate

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// timestampMargin is how long before a restore's target time a file must
// have been stored for its listing date alone to prove it qualifies.
const timestampMargin = time.Minute

// planTarget bounds a restore plan.
type planTarget struct {
	txid      ltx.TXID  // newest TXID to include; zero for no limit
	timestamp time.Time // include only change sets committed before it; zero for no limit
}

// plan picks the files that rebuild a database up to the target, newest
// snapshot first, then at each step the file that reaches furthest from
// the position so far, from any level, the way Litestream does.
//
// from is the TXID the caller already has (zero to start from nothing, in
// which case the plan starts with a snapshot or a file starting at TXID 1).
// A file may start before from+1: it then holds every page changed since
// its start, which is a superset of what is needed.
//
// When the bucket has a head, files past its TXID are ignored: they belong
// to an upload the head never announced.
func (bk *Bucket) plan(ctx context.Context, files *dbFiles, from ltx.TXID, target planTarget) ([]fileInfo, error) {
	limit := target.txid
	if files.hasHead && (limit == 0 || files.head.TXID < limit) {
		limit = files.head.TXID
	}
	stamps := map[string]time.Time{}
	eligible := func(fi fileInfo) (bool, error) {
		if limit != 0 && fi.MaxTXID > limit {
			return false, nil
		}
		if target.timestamp.IsZero() {
			return true, nil
		}
		// A file stored well before the target was certainly committed
		// before it. The margin covers listings' one-second granularity
		// and clock skew between the node and the bucket.
		if time.UnixMilli(fi.CreatedAt).Add(timestampMargin).Before(target.timestamp) {
			return true, nil
		}
		ts, ok := stamps[fi.Key]
		if !ok {
			var err error
			if ts, err = bk.fileTimestamp(ctx, fi); err != nil {
				return false, err
			}
			stamps[fi.Key] = ts
		}
		return ts.Before(target.timestamp), nil
	}

	var out []fileInfo
	cur := from
	if from == 0 {
		// Newest eligible snapshot; snapshots are sorted by MaxTXID.
		snaps := files.levels[SnapshotLevel]
		for i := len(snaps) - 1; i >= 0; i-- {
			ok, err := eligible(snaps[i])
			if err != nil {
				return nil, err
			}
			if ok && snaps[i].MinTXID == 1 {
				out = append(out, snaps[i])
				cur = snaps[i].MaxTXID
				break
			}
		}
	}
	// Levels 8 to 0, then, for a caller that already has a database,
	// snapshots: a snapshot holds every page, so it also brings a database
	// at any TXID forward, but it is the costliest file to fetch, so it is
	// taken only when it reaches further than the rest.
	levels := []int{8, 7, 6, 5, 4, 3, 2, 1, 0}
	if from > 0 {
		levels = append(levels, SnapshotLevel)
	}
	for {
		var best fileInfo
		found := false
		for _, l := range levels {
			for _, fi := range files.levels[l] {
				if fi.MinTXID > cur+1 {
					break
				}
				if fi.MaxTXID <= cur || (cur == 0 && fi.MinTXID != 1) {
					continue
				}
				if found && fi.MaxTXID <= best.MaxTXID {
					continue
				}
				ok, err := eligible(fi)
				if err != nil {
					return nil, err
				}
				if ok {
					best, found = fi, true
				}
			}
		}
		if !found {
			break
		}
		out = append(out, best)
		cur = best.MaxTXID
	}
	return out, nil
}

// fileTimestamp returns when the last transaction in a file was committed.
// A file uploaded before the time asked for certainly qualifies, so only
// newer ones cost a read of their header.
func (bk *Bucket) fileTimestamp(ctx context.Context, fi fileInfo) (time.Time, error) {
	rc, _, err := bk.backend.Get(ctx, fi.Key)
	if err != nil {
		return time.Time{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(io.LimitReader(rc, ltx.HeaderSize))
	if err := dec.DecodeHeader(); err != nil {
		return time.Time{}, fmt.Errorf("read header of %s: %w", fi.Key, err)
	}
	return time.UnixMilli(dec.Header().Timestamp), nil
}
