package ferry

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A commit to a WAL that bypasses the store is written by the kernel
// straight to the backing file, so nothing reaches Ferry when it happens.
// Rather than poll each WAL hard, the store asks the kernel to tell it:
// one inotify instance for the whole store watches the backing WAL of each
// database while passthrough handles of it are open, and every write
// (IN_MODIFY) wakes the catch-up of that database. The application's
// write is not delayed: the kernel queues the event and returns, and
// identical events still queued are merged into one, so a burst of writes
// costs one wakeup. An idle database costs a watch only while a WAL handle
// is open, and no goroutine at all. The poll (walfollow.go) remains as a
// slow fallback, and is the only follower where inotify is unavailable.

// walWatcher is the store's inotify instance and the database each of its
// watches belongs to.
type walWatcher struct {
	logger *slog.Logger
	file   *os.File // non-blocking, so that closing it ends a pending read

	mu     sync.Mutex
	fd     int           // file's descriptor, valid until closed is set
	dbs    map[int32]*DB // watch descriptor → database
	closed bool
}

// newWALWatcher returns a watcher over a new inotify instance, or nil when
// the kernel will not give one; WALs are then followed by polling alone.
func newWALWatcher(logger *slog.Logger) *walWatcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		logger.Warn("cannot watch WALs for writes; following them by polling", "err", err)
		return nil
	}
	return &walWatcher{
		logger: logger,
		file:   os.NewFile(uintptr(fd), "inotify"),
		fd:     fd,
		dbs:    make(map[int32]*DB),
	}
}

// watch starts watching the file at path for writes on behalf of d and
// returns the watch descriptor. Watching a file already watched returns
// its descriptor again.
func (w *walWatcher) watch(d *DB, path string) (int32, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("WAL watcher closed")
	}
	wd, err := unix.InotifyAddWatch(w.fd, path, unix.IN_MODIFY)
	if err != nil {
		return 0, err
	}
	w.dbs[int32(wd)] = d
	return int32(wd), nil
}

// unwatch stops the watch wd. A watch the kernel already dropped (its file
// was deleted and closed) is gone already.
func (w *walWatcher) unwatch(wd int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	delete(w.dbs, wd)
	if _, err := unix.InotifyRmWatch(w.fd, uint32(wd)); err != nil && !errors.Is(err, unix.EINVAL) {
		w.logger.Warn("stop watching WAL", "err", err)
	}
}

// count returns the number of watches.
func (w *walWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dbs)
}

// close ends the watcher and every watch; run returns.
func (w *walWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	clear(w.dbs)
	w.file.Close()
}

// run reads events until the watcher is closed, and catches up each
// database whose WAL was written. Catching up while more events queue is
// what coalesces them: the writes of one commit that arrive meanwhile are
// read as one batch, and lead to one more catch-up at most.
func (w *walWatcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.logger.Error("read WAL write events; following WALs by polling", "err", err)
			}
			return
		}
		for _, d := range w.written(buf[:n]) {
			d.walWritten()
		}
	}
}

// written returns the databases whose WAL the events in buf report
// written, each once, and forgets watches the kernel dropped.
func (w *walWatcher) written(buf []byte) []*DB {
	w.mu.Lock()
	defer w.mu.Unlock()
	var dbs []*DB
	seen := make(map[*DB]bool)
	add := func(d *DB) {
		if d != nil && !seen[d] {
			seen[d] = true
			dbs = append(dbs, d)
		}
	}
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		buf = buf[min(len(buf), unix.SizeofInotifyEvent+int(ev.Len)):]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			// Events were lost: look at every watched WAL.
			for _, d := range w.dbs {
				add(d)
			}
		case ev.Mask&unix.IN_IGNORED != 0:
			delete(w.dbs, ev.Wd)
		case ev.Mask&unix.IN_MODIFY != 0:
			add(w.dbs[ev.Wd])
		}
	}
	return dbs
}

// watchWALLocked watches the backing WAL for writes, if the store can.
// Every passthrough handle asks again: should the WAL have been replaced
// by a new file while others stayed open, the new one is watched too.
func (d *DB) watchWALLocked() {
	w := d.store.walWatch
	if w == nil {
		return
	}
	wd, err := w.watch(d, d.store.layout.DBPath(d.name)+"-wal")
	if err != nil {
		d.logger.Warn("cannot watch WAL for writes; following it by polling", "err", err)
		return
	}
	for _, have := range d.follow.watches {
		if have == wd {
			return
		}
	}
	d.follow.watches = append(d.follow.watches, wd)
}

// unwatchWALLocked stops watching the WAL: no handle that bypasses the
// store is left.
func (d *DB) unwatchWALLocked() {
	for _, wd := range d.follow.watches {
		d.store.walWatch.unwatch(wd)
	}
	d.follow.watches = nil
}

// walWritten captures what the WAL's latest writes committed.
func (d *DB) walWritten() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return // refused until repaired; the poll and the repair see to it
	}
	if err := d.catchUpWALLocked(); err != nil {
		d.logger.Error("capture WAL commits", "err", err)
	}
}

// WALWatches returns how many WAL files the store is watching for writes
// now: those of databases with passthrough WAL handles open, where the
// kernel offers inotify.
func (s *Store) WALWatches() int {
	if s.walWatch == nil {
		return 0
	}
	return s.walWatch.count()
}
