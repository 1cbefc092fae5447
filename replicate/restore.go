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

// prefetchMax is the largest object a restore downloads ahead into memory;
// larger ones are streamed when their turn comes.
const prefetchMax = 32 << 20

// DefaultRestoreConcurrency is how many objects a restore downloads at once.
const DefaultRestoreConcurrency = 8

// RestoreOptions choose what a restore rebuilds.
type RestoreOptions struct {
	// TXID restores the database as of this transaction; zero means the
	// newest.
	TXID ltx.TXID
	// Timestamp restores the newest state committed before this time; the
	// zero time means the newest. It cannot be combined with TXID.
	Timestamp time.Time
	// Concurrency is how many objects are downloaded at once; zero means
	// DefaultRestoreConcurrency.
	Concurrency int
	// Progress, if set, is called after each file is applied with the bytes
	// of LTX data applied so far and in total.
	Progress func(done, total int64)
	// TempDir is where the database is built before it is renamed to its
	// path; it must be on the same file system. Empty means the path's own
	// directory, under a hidden name.
	TempDir string
}

// Restore implements ferry.Restorer: it writes the newest state of database
// name to path and returns its position.
func (bk *Bucket) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	return bk.RestoreTo(ctx, name, path, RestoreOptions{})
}

// RestoreTo rebuilds database name into a new file at path. The file is
// written under a temporary name beside path and renamed into place only
// once every change set has been applied and the database checksum
// verified, so no partial file is ever visible at path. An existing file
// at path is replaced.
//
// It returns an error wrapping ferry.ErrDatabaseNotFound when the bucket
// holds nothing for name, and one naming the object when an object is
// corrupt or truncated.
func (bk *Bucket) RestoreTo(ctx context.Context, name, path string, opts RestoreOptions) (ferry.Pos, error) {
	res, err := bk.restore(ctx, name, path, opts)
	return res.pos, err
}

// restored describes a database a restore wrote.
type restored struct {
	pos       ferry.Pos
	pageSize  uint32
	timestamp int64 // of the last transaction, milliseconds since the Unix epoch
}

// restore is RestoreTo, returning more about the result.
func (bk *Bucket) restore(ctx context.Context, name, path string, opts RestoreOptions) (restored, error) {
	// Retention on the writer may delete a file between the listing and
	// its download; a fresh listing then leads to the files that replaced
	// it.
	for attempt := 1; ; attempt++ {
		res, err := bk.restoreOnce(ctx, name, path, opts)
		if err == nil || !errors.Is(err, ErrObjectNotFound) || attempt == 3 || ctx.Err() != nil {
			return res, err
		}
		bk.logger.Debug("restore: an object disappeared; listing again", "db", name, "err", err)
	}
}

// restoreOnce is one attempt of restore, from one listing.
func (bk *Bucket) restoreOnce(ctx context.Context, name, path string, opts RestoreOptions) (restored, error) {
	fail := func(err error) (restored, error) { return restored{}, err }
	if opts.TXID != 0 && !opts.Timestamp.IsZero() {
		return fail(errors.New("restore: choose a TXID or a timestamp, not both"))
	}
	files, err := bk.list(ctx, name)
	if err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if files.maxTXID() == 0 {
		if files.nested {
			return fail(fmt.Errorf("restore %s: %w", name, ferry.ErrDatabaseDirectory))
		}
		return fail(fmt.Errorf("restore %s: %w", name, ferry.ErrDatabaseNotFound))
	}
	plan, err := bk.plan(ctx, files, 0, planTarget{txid: opts.TXID, timestamp: opts.Timestamp})
	if err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if len(plan) == 0 {
		return fail(fmt.Errorf("restore %s: no snapshot or history from TXID 1 at or before the requested point", name))
	}
	if opts.TXID != 0 && plan[len(plan)-1].MaxTXID != opts.TXID {
		return fail(fmt.Errorf("restore %s: TXID %s is not restorable: the bucket reaches %s on that path (older changes may have been compacted)", name, opts.TXID, plan[len(plan)-1].MaxTXID))
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	tmpDir := dir
	if opts.TempDir != "" {
		tmpDir = opts.TempDir
		if err := os.MkdirAll(tmpDir, 0o755); err != nil {
			return fail(fmt.Errorf("restore %s: %w", name, err))
		}
	}
	tmp, err := os.CreateTemp(tmpDir, "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	res, err := bk.applyPlan(ctx, tmp, plan, opts)
	if err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if err := tmp.Chmod(files.head.fileMode()); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if err := tmp.Sync(); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if err := tmp.Close(); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	if err := syncDir(dir); err != nil {
		return fail(fmt.Errorf("restore %s: %w", name, err))
	}
	return res, nil
}

// fetched is one object downloaded ahead of its turn.
type fetched struct {
	data []byte
	err  error
}

// applyPlan writes the plan's files onto an empty file in order,
// downloading small ones ahead in parallel.
func (bk *Bucket) applyPlan(ctx context.Context, f *os.File, plan []fileInfo, opts RestoreOptions) (restored, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conc := opts.Concurrency
	if conc <= 0 {
		conc = DefaultRestoreConcurrency
	}
	var total int64
	for _, fi := range plan {
		total += fi.Size
	}

	results := make([]chan fetched, len(plan))
	sem := make(chan struct{}, conc)
	for i, fi := range plan {
		results[i] = make(chan fetched, 1)
		if fi.Size > prefetchMax {
			continue
		}
		go func(fi fileInfo, out chan<- fetched) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out <- fetched{err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			data, err := bk.download(ctx, fi)
			out <- fetched{data: data, err: err}
		}(fi, results[i])
	}

	var (
		state dbState
		done  int64
	)
	for i, fi := range plan {
		var r io.Reader
		if fi.Size > prefetchMax {
			rc, _, err := bk.backend.Get(ctx, fi.Key)
			if err != nil {
				return restored{}, err
			}
			err = state.apply(ctx, f, rc, fi)
			rc.Close()
			if err != nil {
				return restored{}, err
			}
		} else {
			res := <-results[i]
			if res.err != nil {
				return restored{}, res.err
			}
			r = bytes.NewReader(res.data)
			if err := state.apply(ctx, f, r, fi); err != nil {
				return restored{}, err
			}
		}
		done += fi.Size
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	pos, err := state.pos()
	if err != nil {
		return restored{}, err
	}
	return restored{pos: pos, pageSize: state.pageSize, timestamp: state.timestamp}, nil
}

// download reads a whole object, checking its length against the listing.
func (bk *Bucket) download(ctx context.Context, fi fileInfo) ([]byte, error) {
	rc, _, err := bk.backend.Get(ctx, fi.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("download %s: %w", fi.Key, err)
	}
	return buf.Bytes(), nil
}

// downloadSpool reads a whole object into a spool, so that a large one
// goes to a temporary file rather than memory.
func (bk *Bucket) downloadSpool(ctx context.Context, fi fileInfo) (*spool, error) {
	rc, _, err := bk.backend.Get(ctx, fi.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	sp := &spool{}
	if _, err := io.Copy(sp, rc); err != nil {
		sp.Close()
		return nil, fmt.Errorf("download %s: %w", fi.Key, err)
	}
	return sp, nil
}

// dbState tracks a database being rebuilt and its rolling checksum, so
// every step can be verified without rereading the whole file.
//
// The checksum is kept lazily: a snapshot's comes from its decoder, which
// computes it anyway, and a page's own checksum is computed only when a
// later file replaces or drops that page. Restoring a snapshot therefore
// checksums each page once, not twice.
type dbState struct {
	f        *os.File
	started  bool
	txid     ltx.TXID
	pageSize uint32
	lockPgno uint32
	commit   uint32
	sum      ltx.Checksum   // XOR of the page checksums; bit 63 is meaningless
	known    []ltx.Checksum // known[pgno-1]; zero when not computed yet
	// unchecked is set once a file without checksums (one Litestream
	// wrote) has been applied; the final checksum is then computed only.
	unchecked bool
	timestamp int64 // header timestamp of the last file applied
	page      []byte
}

// checksum returns the database checksum.
func (s *dbState) checksum() ltx.Checksum { return ltx.ChecksumFlag | s.sum }

// pageSum returns the checksum of page pgno as the file holds it now.
func (s *dbState) pageSum(pgno uint32) (ltx.Checksum, error) {
	if c := s.known[pgno-1]; c != 0 {
		return c, nil
	}
	if _, err := s.f.ReadAt(s.page, int64(pgno-1)*int64(s.pageSize)); err != nil {
		return 0, fmt.Errorf("read page %d: %w", pgno, err)
	}
	c := ltx.ChecksumPage(pgno, s.page)
	s.known[pgno-1] = c
	return c, nil
}

// apply writes one LTX file onto f and verifies it: the file checksum,
// and the database checksum before (when the file continues exactly where
// the database is) and after.
func (s *dbState) apply(ctx context.Context, f *os.File, r io.Reader, fi fileInfo) error {
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return &objectError{key: fi.Key, err: err}
	}
	hdr := dec.Header()
	if hdr.MinTXID != fi.MinTXID || hdr.MaxTXID != fi.MaxTXID {
		return &objectError{key: fi.Key, err: fmt.Errorf("%w: header covers %s-%s", ltx.ErrInvalidFile, hdr.MinTXID, hdr.MaxTXID)}
	}
	// The first file, a snapshot, is summed by its decoder if it carries
	// checksums.
	fromDecoder := false
	if !s.started {
		if !hdr.IsSnapshot() {
			return fmt.Errorf("object %s: history must start with a snapshot", fi.Key)
		}
		s.f, s.started = f, true
		s.pageSize, s.lockPgno = hdr.PageSize, ltx.LockPgno(hdr.PageSize)
		s.page = make([]byte, hdr.PageSize)
		fromDecoder = !hdr.NoChecksum()
	}
	if hdr.NoChecksum() {
		s.unchecked = true
	}
	if !hdr.IsSnapshot() && !hdr.NoChecksum() && !s.unchecked && hdr.MinTXID == s.txid+1 && s.checksum() != hdr.PreApplyChecksum {
		return fmt.Errorf("object %s: %w: database is %s before it, file expects %s", fi.Key, ltx.ErrPreApplyMismatch, s.checksum(), hdr.PreApplyChecksum)
	}
	if hdr.PageSize != s.pageSize {
		if err := s.rewrite(hdr, fi); err != nil {
			return err
		}
	}
	oldCommit := s.commit
	for uint32(len(s.known)) < hdr.Commit {
		s.known = append(s.known, 0)
	}

	data := make([]byte, hdr.PageSize)
	w := pageWriter{f: f, pageSize: int64(hdr.PageSize)}
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return &objectError{key: fi.Key, err: err}
		}
		if !fromDecoder && ph.Pgno != s.lockPgno {
			// Pages are unique within a file, so the old version of this
			// one is still on disk, and pages past the old end have none.
			if ph.Pgno <= oldCommit {
				old, err := s.pageSum(ph.Pgno)
				if err != nil {
					return fmt.Errorf("apply %s: %w", fi.Key, err)
				}
				s.sum ^= old
			}
			c := ltx.ChecksumPage(ph.Pgno, data)
			s.sum ^= c
			s.known[ph.Pgno-1] = c
		}
		if err := w.write(ph.Pgno, data); err != nil {
			return fmt.Errorf("apply %s: %w", fi.Key, err)
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("apply %s: %w", fi.Key, err)
	}
	if err := dec.Close(); err != nil {
		return &objectError{key: fi.Key, err: err}
	}
	trailer := dec.Trailer()

	if fromDecoder {
		// Close verified that the pages sum to the trailer's checksum.
		s.sum = trailer.PostApplyChecksum
	} else {
		// Pages past the new end leave the checksum; read them before
		// the truncation drops them.
		for pgno := hdr.Commit + 1; pgno <= oldCommit; pgno++ {
			if pgno == s.lockPgno {
				continue
			}
			c, err := s.pageSum(pgno)
			if err != nil {
				return fmt.Errorf("apply %s: %w", fi.Key, err)
			}
			s.sum ^= c
		}
		// Pages the database grew by without the file writing them read
		// back as zeros.
		for pgno := oldCommit + 1; pgno <= hdr.Commit; pgno++ {
			if pgno != s.lockPgno && s.known[pgno-1] == 0 {
				clear(s.page)
				c := ltx.ChecksumPage(pgno, s.page)
				s.sum ^= c
				s.known[pgno-1] = c
			}
		}
	}
	if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return fmt.Errorf("apply %s: %w", fi.Key, err)
	}
	if uint32(len(s.known)) > hdr.Commit {
		clear(s.known[hdr.Commit:])
		s.known = s.known[:hdr.Commit]
	}
	s.commit = hdr.Commit
	s.txid = hdr.MaxTXID
	s.timestamp = hdr.Timestamp
	if !hdr.NoChecksum() && !s.unchecked && s.checksum() != trailer.PostApplyChecksum {
		return fmt.Errorf("object %s: %w: database is %s after it, file says %s", fi.Key, ltx.ErrPostApplyMismatch, s.checksum(), trailer.PostApplyChecksum)
	}
	return nil
}

// rewrite starts the database over for a file that changes the page size.
// Such a file (VACUUM after PRAGMA page_size or auto_vacuum) holds every
// page at the new size, and its pre-apply checksum, already checked,
// chains it to the old database; what the file leaves out reads back as
// zeros, and the post-apply checksum catches a file that is not whole.
func (s *dbState) rewrite(hdr ltx.Header, fi fileInfo) error {
	if hdr.MinTXID != s.txid+1 {
		return fmt.Errorf("object %s: %w: %d after %d, and the file does not start right after TXID %s", fi.Key, ltx.ErrPageSizeMismatch, hdr.PageSize, s.pageSize, s.txid)
	}
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("apply %s: %w", fi.Key, err)
	}
	s.pageSize, s.lockPgno = hdr.PageSize, ltx.LockPgno(hdr.PageSize)
	s.page = make([]byte, hdr.PageSize)
	s.commit, s.sum, s.known = 0, 0, nil
	return nil
}

// pos returns the position reached.
func (s *dbState) pos() (ferry.Pos, error) {
	if !s.started {
		return ferry.Pos{}, errNoHistory
	}
	return ferry.Pos{TXID: s.txid, PostApplyChecksum: s.checksum()}, nil
}

// pageWriter coalesces runs of consecutive pages into one write, which
// makes writing a snapshot one large sequential write instead of one per
// page.
type pageWriter struct {
	f        *os.File
	pageSize int64
	buf      []byte
	start    uint32 // first page in buf
	next     uint32 // page that would extend buf
}

func (w *pageWriter) write(pgno uint32, data []byte) error {
	if len(w.buf) > 0 && (pgno != w.next || len(w.buf) >= 4<<20) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.start = pgno
	}
	w.buf = append(w.buf, data...)
	w.next = pgno + 1
	return nil
}

func (w *pageWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(w.buf, int64(w.start-1)*w.pageSize)
	w.buf = w.buf[:0]
	return err
}
