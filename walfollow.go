package ferry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// A WAL opened for writing on a node that may write the database is served
// by the kernel straight from the backing file (FUSE passthrough), so its
// writes never reach the store one by one: that is what makes a WAL-mode
// commit cost no FUSE round trip. The store follows such a WAL by reading
// it instead. It catches up (validates new frames and turns each committed
// transaction into a change set, exactly as for written frames):
//
//   - before anything that could overwrite frames it has not read: a write
//     or truncate of the database file (a checkpoint, which must happen
//     before SQLite restarts the WAL from its beginning), a truncate,
//     rename or deletion of the WAL;
//   - before anyone observes the position (Pos, Sync, an fsync of the WAL,
//     closing the database);
//   - as soon as the WAL is written, told by the kernel (walnotify.go);
//   - and in the background, every walPollInterval while the WAL changes,
//     backing off while it does not: a slow fallback where the kernel tells.
//
// A crash of Ferry loses nothing: the frames are in the backing WAL, and
// recovery captures every commit after the log's position from there.

// walPollInterval is how often the store looks for new commits in a WAL
// that bypasses it, while commits keep coming, when
// StoreOptions.WALPollInterval is zero.
const walPollInterval = 10 * time.Millisecond

// walPollMaxSkip bounds the backoff of an idle WAL: it is looked at at
// least every walPollMaxSkip × walPollInterval.
const walPollMaxSkip = 32

// walFollow is the state of following a WAL that bypasses the store.
type walFollow struct {
	handles int      // open WAL handles that bypass the store
	reader  *os.File // the backing WAL, for reading; nil until needed
	skip    int      // polls to skip before looking again
	idle    int      // polls in a row that found nothing
	watches []int32  // inotify watches of the backing WAL

	// unfence gives back the WAL write lock the store holds while this
	// node may not write but handles that bypass it are still open; nil
	// while not fenced. The fence stays until the handles are closed or
	// a new lease (another epoch) is granted here, or, when it went up
	// because the database broke, until a repair mends it.
	unfence     func()
	fencedEpoch uint64
	// fencedBroken is set when the fence went up because the database was
	// broken: it comes down once a repair clears that, under any epoch.
	fencedBroken bool
}

// WALBypassOpened records that a handle of the database's WAL was opened
// whose writes go to the backing file without passing through the store.
func (d *DB) WALBypassOpened() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.follow.handles++
	d.follow.skip, d.follow.idle = 0, 0
	d.watchWALLocked()
}

// WALBypassClosed records that such a handle was closed. The last one
// captures what is left to capture and lets the WAL go.
func (d *DB) WALBypassClosed() {
	d.mu.Lock()
	if err := d.catchUpWALLocked(); err != nil {
		d.logger.Error("capture WAL commits", "err", err)
	}
	d.follow.handles--
	var unfence func()
	if d.follow.handles <= 0 {
		d.follow.handles = 0
		d.unwatchWALLocked()
		d.closeWALReaderLocked()
		unfence, d.follow.unfence = d.follow.unfence, nil
	}
	d.mu.Unlock()
	if unfence != nil {
		unfence()
	}
}

// WALBypassed reports whether handles of the database's WAL are open whose
// writes bypass the store.
func (d *DB) WALBypassed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.follow.handles > 0
}

// CatchUpWAL captures every transaction committed to a WAL that bypasses
// the store. The mount calls it before it changes the WAL or the database
// file in a way that could lose frames not read yet.
func (d *DB) CatchUpWAL() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.catchUpWALLocked()
}

// catchUpWALLocked reads the WAL from the end of its last captured commit
// and captures every transaction committed since.
func (d *DB) catchUpWALLocked() error {
	if d.follow.handles == 0 || d.state != stateDatabase {
		return nil
	}
	_, err := d.catchUpWALCountLocked()
	return err
}

// catchUpWALCountLocked is catchUpWALLocked, also reporting how many
// transactions it captured.
func (d *DB) catchUpWALCountLocked() (int, error) {
	f, err := d.walReaderLocked()
	if f == nil || err != nil {
		return 0, err
	}
	b := make([]byte, walHeaderSize)
	if n, _ := f.ReadAt(b, 0); n < walHeaderSize {
		return 0, nil // new, or truncated: nothing committed
	}
	h, ok := parseWALHeader(b)
	if !ok {
		return 0, nil
	}
	w := &d.wal
	if !w.hdrOK || w.hdr != h {
		// SQLite restarted the WAL. It does so only after a checkpoint
		// copied every frame into the database, and the checkpoint's writes
		// to the database caught up first, so no commit of the old
		// generation is left unread.
		w.startGeneration(h)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, d.fail(fmt.Errorf("stat WAL: %w", err))
	}
	// Frames after the last commit belong to a transaction in progress,
	// which SQLite may rewrite in place: read them again.
	w.pending = nil
	w.scanOff, w.scanCksum = w.commitOff, w.commitCksum
	w.maxEnd = fi.Size()
	before := d.pos.TXID
	if err := d.scanWAL(f); err != nil {
		return 0, err
	}
	return int(d.pos.TXID - before), nil
}

// walReaderLocked returns the backing WAL opened for reading, or nil when
// there is none.
func (d *DB) walReaderLocked() (*os.File, error) {
	if d.follow.reader != nil {
		return d.follow.reader, nil
	}
	f, err := os.Open(d.store.layout.DBPath(d.name) + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, d.fail(fmt.Errorf("open WAL: %w", err))
	}
	d.follow.reader = f
	return f, nil
}

// closeWALReaderLocked closes the WAL reader: the WAL was deleted (a new
// one is a new file) or nobody writes it past the store any more.
func (d *DB) closeWALReaderLocked() {
	if d.follow.reader != nil {
		d.follow.reader.Close()
		d.follow.reader = nil
	}
}

// pollWAL is one background look at the database's WAL, if it bypasses
// the store: it captures new commits, fences the WAL's writers once this
// node may no longer write, and lifts the fence under a new lease or once
// a repair mends the break that raised it. An idle
// WAL is looked at less and less often.
func (d *DB) pollWAL() {
	d.mu.Lock()
	bypassed := d.follow.handles > 0
	d.mu.Unlock()
	if !bypassed {
		return
	}
	epoch, writable := d.store.writeTerm(d.name)
	d.mu.Lock()
	fw := &d.follow
	if fw.handles == 0 || d.state != stateDatabase {
		d.mu.Unlock()
		return
	}
	writable = writable && d.broken == nil
	switch {
	case !writable && fw.unfence == nil:
		d.mu.Unlock()
		d.fence(epoch)
		return
	case writable && fw.unfence != nil && (epoch != fw.fencedEpoch || fw.fencedBroken):
		unfence := fw.unfence
		fw.unfence = nil
		d.mu.Unlock()
		unfence()
		d.logger.Info("WAL writers may write again", "epoch", epoch)
		return
	}
	defer d.mu.Unlock()
	if fw.skip > 0 {
		fw.skip--
		return
	}
	n, err := d.catchUpWALCountLocked()
	if err != nil {
		d.logger.Error("capture WAL commits", "err", err)
		return
	}
	if len(fw.watches) > 0 {
		// The kernel tells of every write: this is only a fallback.
		fw.skip = walPollMaxSkip
		return
	}
	if n > 0 {
		fw.idle = 0
		return
	}
	fw.idle++
	fw.skip = min(fw.idle, walPollMaxSkip)
}

// walPollLoop looks for new commits in every WAL that bypasses the store.
func (s *Store) walPollLoop(ctx context.Context) {
	every := s.opts.WALPollInterval
	if every <= 0 {
		every = walPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, db := range s.allDBs() {
			db.pollWAL()
		}
	}
}
