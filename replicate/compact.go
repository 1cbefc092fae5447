package replicate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// Compaction, snapshots and retention. Only the node that wrote a
// database's head in this run does them, and it checks its lease first:
// they add no history, but a stale node deleting files could lose some.

// maintenanceDue reports whether db has a compaction, snapshot or
// retention pass due. The caller holds db.mu.
func (r *Replicator) maintenanceDue(db *database) bool {
	if db.files == nil || !db.wrote {
		return false
	}
	if _, ok := changeSnapshotTXID(db.files); ok && !db.needObject {
		return true
	}
	now := r.opts.Now()
	src := 0
	for _, lv := range r.opts.Levels {
		if due(now, db.lastRun[lv.Level], lv.Interval) && levelMax(db.files, src) > levelMax(db.files, lv.Level) {
			return true
		}
		src = lv.Level
	}
	return r.snapshotDue(db, now)
}

// due reports whether a wall-clock boundary of interval has passed since
// last. Boundaries, rather than elapsed time, line compactions up across
// databases and nodes, as Litestream does.
func due(now, last time.Time, interval time.Duration) bool {
	return now.Truncate(interval).After(last.Truncate(interval))
}

func (r *Replicator) snapshotDue(db *database, now time.Time) bool {
	if r.opts.SnapshotInterval < 0 || db.files.head.TXID == 0 || db.needObject || r.anyDamageWait(db) {
		return false
	}
	return now.Sub(db.lastRun[SnapshotLevel]) >= r.opts.SnapshotInterval &&
		levelMax(db.files, SnapshotLevel) < db.files.head.TXID
}

// levelMax returns the newest TXID at one level.
func levelMax(f *dbFiles, level int) ltx.TXID {
	var max ltx.TXID
	for _, fi := range f.levels[level] {
		if fi.MaxTXID > max {
			max = fi.MaxTXID
		}
	}
	return max
}

// maintain runs the compactions, snapshot and retention that are due.
func (r *Replicator) maintain(ctx context.Context, db *database) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !r.maintenanceDue(db) {
		return nil
	}
	epoch, err := r.checkWrite(ctx, db.name)
	if err != nil || epoch != db.epoch {
		db.wrote = false // another node writes it now
		return nil
	}
	if !db.needObject {
		// Before compaction, which may merge the file the snapshot
		// belongs at the end of into a longer one.
		if err := r.changeSnapshot(ctx, db); err != nil {
			return err
		}
	}
	now := r.opts.Now()
	src := 0
	for _, lv := range r.opts.Levels {
		if due(now, db.lastRun[lv.Level], lv.Interval) {
			if err := r.compact(ctx, db, src, lv.Level); err != nil {
				return err
			}
			db.lastRun[lv.Level] = now
		}
		src = lv.Level
	}
	if r.snapshotDue(db, now) {
		if err := r.snapshotAt(ctx, db, db.files.head.TXID); err != nil {
			return err
		}
		db.lastRun[SnapshotLevel] = now
	}
	return r.retain(ctx, db, now)
}

// compact merges the files of level src newer than level dst's newest into
// one file at dst.
func (r *Replicator) compact(ctx context.Context, db *database, src, dst int) error {
	from := levelMax(db.files, dst)
	var inputs []fileInfo
	for _, fi := range db.files.levels[src] {
		if fi.MaxTXID <= from || fi.MaxTXID > db.files.head.TXID {
			continue
		}
		if r.damageWait(db, fi.Key) {
			break // damaged beyond repair; merge what comes before it
		}
		if len(inputs) == 0 {
			if from > 0 && fi.MinTXID > from+1 {
				break // a gap; wait for the files between
			}
		} else if fi.MinTXID != inputs[len(inputs)-1].MaxTXID+1 {
			break
		}
		inputs = append(inputs, fi)
	}
	if len(inputs) == 0 {
		return nil
	}
	bufs := make([]io.Reader, 0, len(inputs))
	var pageSize uint32
	for _, fi := range inputs {
		sp, err := r.bucket.downloadSpool(ctx, fi)
		if err != nil {
			return fmt.Errorf("compact %s L%d: %w", db.name, dst, err)
		}
		defer sp.Close()
		src, err := sp.Reader()
		if err != nil {
			return err
		}
		hdr, rd, err := ltx.PeekHeader(src)
		if err != nil {
			return r.compactFailed(ctx, db, inputs, fmt.Errorf("compact %s L%d: object %s: %w", db.name, dst, fi.Key, err))
		}
		// Files of different page sizes cannot be merged: a change of page
		// size ends this run, and the next compaction starts from it.
		if len(bufs) > 0 && hdr.PageSize != pageSize {
			break
		}
		pageSize = hdr.PageSize
		bufs = append(bufs, rd)
	}
	inputs = inputs[:len(bufs)]
	out := &spool{}
	defer out.Close()
	c := ltx.NewCompactor(out, bufs...)
	if err := c.Compact(ctx); err != nil {
		return r.compactFailed(ctx, db, inputs, fmt.Errorf("compact %s L%d from %s..: %w", db.name, dst, inputs[0].Key, err))
	}
	hdr := c.Header()
	key := r.bucket.keys.ltx(db.name, dst, hdr.MinTXID, hdr.MaxTXID)
	if err := r.putLTX(ctx, key, out, hdr); err != nil {
		return fmt.Errorf("compact %s L%d: %w", db.name, dst, err)
	}
	db.files.add(fileInfo{Level: dst, MinTXID: hdr.MinTXID, MaxTXID: hdr.MaxTXID, Size: out.Size(), CreatedAt: r.opts.Now().UnixMilli(), Key: key})
	r.opts.Logger.Debug("compacted", "db", db.name, "level", dst, "min", hdr.MinTXID, "max", hdr.MaxTXID, "inputs", len(inputs))
	return nil
}

// snapshotAt writes a level 9 snapshot of db at txid, rebuilt from the
// bucket itself so it holds exactly what the bucket holds.
func (r *Replicator) snapshotAt(ctx context.Context, db *database, txid ltx.TXID) error {
	dir, err := os.MkdirTemp("", "ferry-snapshot-*")
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	defer os.RemoveAll(dir)
	dbPath := dir + "/db"
	res, err := r.bucket.restore(ctx, db.name, dbPath, RestoreOptions{TXID: txid})
	if err != nil && r.healAfter(ctx, db, err) {
		res, err = r.bucket.restore(ctx, db.name, dbPath, RestoreOptions{TXID: txid})
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	ltxPath := dir + "/snapshot.ltx"
	if err := encodeSnapshot(ctx, dbPath, ltxPath, res); err != nil {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	f, err := os.Open(ltxPath)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	key := r.bucket.keys.ltx(db.name, SnapshotLevel, 1, res.pos.TXID)
	opts := PutOptions{IfNoneMatch: true, Metadata: map[string]string{
		"litestream-timestamp": time.UnixMilli(res.timestamp).UTC().Format(time.RFC3339Nano),
	}}
	if _, err := r.bucket.backend.Put(ctx, key, f, fi.Size(), opts); err != nil && !errors.Is(err, ErrPreconditionFailed) {
		return fmt.Errorf("snapshot %s: %w", db.name, err)
	}
	db.files.add(fileInfo{Level: SnapshotLevel, MinTXID: 1, MaxTXID: res.pos.TXID, Size: fi.Size(), CreatedAt: r.opts.Now().UnixMilli(), Key: key})
	r.opts.Logger.Info("snapshot written", "db", db.name, "txid", res.pos.TXID, "bytes", fi.Size())
	return nil
}

// encodeSnapshot writes the database at dbPath as a snapshot LTX file.
func encodeSnapshot(ctx context.Context, dbPath, ltxPath string, res restored) error {
	src, err := os.Open(dbPath)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	pageSize := res.pageSize
	commit := uint32(st.Size() / int64(pageSize))
	dst, err := os.Create(ltxPath)
	if err != nil {
		return err
	}
	defer dst.Close()
	w := bufio.NewWriterSize(dst, 1<<20)
	enc, _ := ltx.NewEncoder(w)
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, PageSize: pageSize, Commit: commit,
		MinTXID: 1, MaxTXID: res.pos.TXID, Timestamp: res.timestamp,
	}); err != nil {
		return err
	}
	lock := ltx.LockPgno(pageSize)
	page := make([]byte, pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if pgno == lock {
			continue
		}
		if _, err := src.ReadAt(page, int64(pgno-1)*int64(pageSize)); err != nil {
			return fmt.Errorf("read page %d: %w", pgno, err)
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			return err
		}
	}
	enc.SetPostApplyChecksum(res.pos.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return dst.Sync()
}

// retain deletes what the bucket no longer needs: L0 files compacted into
// the next level, snapshots past their retention (never the newest), and
// files at levels 1-8 wholly older than the oldest snapshot kept.
func (r *Replicator) retain(ctx context.Context, db *database, now time.Time) error {
	f := db.files
	doomed := map[string]bool{}

	if len(r.opts.Levels) > 0 {
		next := levelMax(f, r.opts.Levels[0].Level)
		for _, fi := range f.levels[0] {
			if fi.MaxTXID <= next {
				doomed[fi.Key] = true
			}
		}
	}
	snaps := f.levels[SnapshotLevel]
	var oldestKept ltx.TXID
	for i, fi := range snaps {
		if i < len(snaps)-1 && now.Sub(time.UnixMilli(fi.CreatedAt)) > r.opts.SnapshotRetention {
			doomed[fi.Key] = true
			continue
		}
		if oldestKept == 0 {
			oldestKept = fi.MaxTXID
		}
	}
	if oldestKept > 0 {
		for l := 0; l < SnapshotLevel; l++ {
			for _, fi := range f.levels[l] {
				if fi.MaxTXID <= oldestKept {
					doomed[fi.Key] = true
				}
			}
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	keys := make([]string, 0, len(doomed))
	for k := range doomed {
		keys = append(keys, k)
	}
	if err := r.bucket.backend.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("retention %s: %w", db.name, err)
	}
	f.remove(doomed)
	return nil
}
