package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// Gaps in the local log. A file missing from the middle of a database's
// local LTX log (removed by hand, lost with a damaged disk block) breaks
// the chain that restores, healing and `ferry verify` rely on. The
// replicator checks every log when it starts and refills each gap from
// the bucket: with the objects that cover exactly the missing TXIDs, or,
// where the bucket's files are coarser than the log's, with objects that
// also cover some of the neighbouring local files, which they then
// replace. Only TXIDs the bucket holds are ever replaced, so the log still
// keeps everything the bucket lacks, and the newest local file, which
// recovery reads its WAL position from, is never replaced.

// gapCheckTimeout bounds how long Start waits for the bucket to refill
// gaps before it lets the store open the databases.
const gapCheckTimeout = 10 * time.Second

// logGap is a run of TXIDs missing between local files i-1 and i.
type logGap struct {
	i        int
	min, max ltx.TXID
}

// String names the missing TXIDs.
func (g logGap) String() string { return fmt.Sprintf("TXIDs %s-%s", g.min, g.max) }

// findGaps lists the gaps between consecutive files of local.
func findGaps(local []localFile) []logGap {
	var gaps []logGap
	for i := 1; i < len(local); i++ {
		if local[i].MinTXID > local[i-1].MaxTXID+1 {
			gaps = append(gaps, logGap{i: i, min: local[i-1].MaxTXID + 1, max: local[i].MinTXID - 1})
		}
	}
	return gaps
}

// checkLocalLogs refills the gaps in every database's local log that the
// bucket can fill, and logs an error naming each gap it cannot. Only
// databases whose log has a gap cost a request. It never fails: a gap
// left here is retried before the database's next upload.
func (r *Replicator) checkLocalLogs(ctx context.Context, names []string) {
	for _, name := range names {
		local, err := r.localFiles(name)
		if err != nil || len(findGaps(local)) == 0 {
			continue
		}
		db := r.get(name)
		db.mu.Lock()
		err = r.fillGaps(ctx, db)
		db.mu.Unlock()
		if err != nil {
			r.opts.Logger.Error("local LTX log has a gap", "db", name, "err", err)
		}
	}
}

// fillGaps refills the gaps in db's local log from the bucket. It sets
// db.logChecked once every gap is refilled or found to be beyond the
// bucket's reach, which it reports with an error naming the gap. The
// caller holds db.mu.
func (r *Replicator) fillGaps(ctx context.Context, db *database) error {
	var unfillable []error
	skip := map[ltx.TXID]bool{} // by first missing TXID
	for round := 0; ; round++ {
		local, err := r.localFiles(db.name)
		if err != nil {
			return err
		}
		var g logGap
		found := false
		for _, gap := range findGaps(local) {
			if !skip[gap.min] {
				g, found = gap, true
				break
			}
		}
		if !found {
			db.logChecked = true
			return errors.Join(unfillable...)
		}
		if round > len(local) {
			return fmt.Errorf("local log of %s: gaps remain after %d refills", db.name, round)
		}
		if err := r.load(ctx, db); err != nil {
			return err
		}
		plan, from, to := r.planGap(db.files, local, g)
		if plan == nil {
			skip[g.min] = true
			unfillable = append(unfillable, fmt.Errorf("local LTX log of %s is missing %s, and the bucket cannot refill it", db.name, g))
			continue
		}
		err = r.refill(ctx, db, local, plan, from, to)
		var oe *objectError
		if errors.Is(err, ErrConflict) || errors.As(err, &oe) {
			// Retrying would meet the same objects: report it once.
			skip[g.min] = true
			unfillable = append(unfillable, fmt.Errorf("local LTX log of %s is missing %s, and the bucket cannot refill it: %w", db.name, g, err))
			continue
		} else if err != nil {
			return fmt.Errorf("refill %s of %s: %w", g, db.name, err)
		}
		r.opts.Logger.Warn("refilled a gap in the local LTX log from the bucket",
			"db", db.name, "missing", g.String(), "objects", len(plan), "replaced", to-from)
	}
}

// planGap picks bucket objects that fill gap g, in order, and the local
// files local[from:to] they replace. Local files before the gap may be
// replaced from the nearest one backwards, files after it up to all but
// the newest. It returns a nil plan when the bucket cannot fill the gap.
func (r *Replicator) planGap(files *dbFiles, local []localFile, g logGap) (plan []fileInfo, from, to int) {
	limit := files.maxTXID()
	if files.hasHead {
		limit = files.head.TXID
	}
	byMin := map[ltx.TXID][]fileInfo{}
	for _, lv := range files.levels {
		for _, fi := range lv {
			if fi.MaxTXID <= limit {
				byMin[fi.MinTXID] = append(byMin[fi.MinTXID], fi)
			}
		}
	}
	// The plan may end at the gap's end or at the end of any local file
	// after it except the newest.
	ends := map[ltx.TXID]int{g.max: g.i}
	for k := g.i; k < len(local)-1; k++ {
		ends[local[k].MaxTXID] = k + 1
	}
	for from = g.i; from >= 0; from-- {
		start := g.min
		if from < g.i {
			start = local[from].MinTXID
		}
		if path, to := shortestChain(byMin, start, ends); path != nil {
			return path, from, to
		}
	}
	return nil, 0, 0
}

// shortestChain searches, breadth first, for a chain of objects starting
// at TXID start and ending at one of ends, and returns it with the value
// of the end it reached; of the ends reachable with fewest objects, the
// nearest wins.
func shortestChain(byMin map[ltx.TXID][]fileInfo, start ltx.TXID, ends map[ltx.TXID]int) ([]fileInfo, int) {
	var last ltx.TXID
	for e := range ends {
		last = max(last, e)
	}
	prev := map[ltx.TXID]fileInfo{} // how each reached end was reached
	frontier := []ltx.TXID{start - 1}
	seen := map[ltx.TXID]bool{start - 1: true}
	for len(frontier) > 0 {
		var next []ltx.TXID
		var best ltx.TXID
		for _, cur := range frontier {
			for _, fi := range byMin[cur+1] {
				if fi.MaxTXID > last || seen[fi.MaxTXID] {
					continue
				}
				seen[fi.MaxTXID] = true
				prev[fi.MaxTXID] = fi
				next = append(next, fi.MaxTXID)
				if _, ok := ends[fi.MaxTXID]; ok && (best == 0 || fi.MaxTXID < best) {
					best = fi.MaxTXID
				}
			}
		}
		if best != 0 {
			var path []fileInfo
			for at := best; at != start-1; at = prev[at].MinTXID - 1 {
				path = append([]fileInfo{prev[at]}, path...)
			}
			return path, ends[best]
		}
		frontier = next
	}
	return nil, 0
}

// refill downloads plan, checks that it continues the local files around
// local[from:to], removes those files and writes plan's objects in their
// place. The objects are all verified before anything local changes, and
// the files removed hold only TXIDs the bucket holds, so a crash midway
// leaves at worst a wider gap that the next start refills.
func (r *Replicator) refill(ctx context.Context, db *database, local []localFile, plan []fileInfo, from, to int) error {
	bufs := make([][]byte, len(plan))
	var post ltx.Checksum
	if from > 0 {
		_, trailer, err := ltx.ReadFileEnds(local[from-1].Path)
		if err != nil {
			return err
		}
		post = trailer.PostApplyChecksum
	}
	for i, fi := range plan {
		data, err := r.bucket.download(ctx, fi)
		if err != nil {
			return err
		}
		dec := ltx.NewDecoder(bytes.NewReader(data))
		if err := dec.Verify(); err != nil {
			return &objectError{key: fi.Key, err: err}
		}
		hdr := dec.Header()
		if hdr.MinTXID != fi.MinTXID || hdr.MaxTXID != fi.MaxTXID {
			return &objectError{key: fi.Key, err: fmt.Errorf("%w: header covers %s-%s", ltx.ErrInvalidFile, hdr.MinTXID, hdr.MaxTXID)}
		}
		if (from > 0 || i > 0) && hdr.PreApplyChecksum != post {
			return fmt.Errorf("%w: object %s starts from checksum %s, the local log is at %s", ErrConflict, fi.Key, hdr.PreApplyChecksum, post)
		}
		post = dec.Trailer().PostApplyChecksum
		bufs[i] = data
	}
	// The objects must continue the local log on at least one side; the
	// far side of another gap is checked when that gap is refilled.
	if end := plan[len(plan)-1].MaxTXID; local[to].MinTXID == end+1 {
		hdr, _, err := ltx.ReadFileEnds(local[to].Path)
		if err != nil {
			return err
		}
		if hdr.PreApplyChecksum != post {
			return fmt.Errorf("%w: the local file %s starts from checksum %s, the bucket's objects end at %s", ErrConflict, filepath.Base(local[to].Path), hdr.PreApplyChecksum, post)
		}
	} else if from == 0 {
		return fmt.Errorf("no local file next to TXIDs %s-%s to check the bucket's objects against", plan[0].MinTXID, end)
	}

	for _, f := range local[from:to] {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for i, fi := range plan {
		if err := writeLocalLTX(r.layout.LTXPath(db.name, fi.MinTXID, fi.MaxTXID), bufs[i]); err != nil {
			return err
		}
	}
	return syncDir(r.layout.LTXDir(db.name))
}

// writeLocalLTX writes one file of the local log durably, under a
// temporary name first so that a crash never leaves a partial file under
// an LTX name.
func writeLocalLTX(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
