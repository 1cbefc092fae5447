package fuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// SQLite's lock bytes. In rollback-journal modes they are in the database
// file at 1 GiB; in WAL mode, connections lock bytes of the -shm file.
const (
	pendingByte     = 0x40000000
	sharedFirst     = pendingByte + 2
	sharedSize      = 510
	walLockOffset   = 120 // first WAL lock byte in the -shm file
	walLockCount    = 8   // write, checkpoint, recover and five read locks
	lockPollInitial = time.Millisecond
	lockPollMax     = 5 * time.Millisecond
)

// LockDatabase takes the locks a writer holding an exclusive lock would
// hold: in the database file the PENDING byte and the SHARED range, and, if
// the database has a WAL index, every WAL lock byte. Connections that are
// reading finish first; new ones wait (SQLite retries on its busy
// handler). The locks are taken through the mount, where the kernel keeps
// them for every process.
func (f *FS) LockDatabase(ctx context.Context, name string) (func(), error) {
	path := filepath.Join(f.opts.Dir, filepath.FromSlash(name))
	db, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Just created underneath the mount: drop a cached negative entry.
		f.InvalidateFile(name)
		db, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil // nobody can have it open
	} else if err != nil {
		return nil, fmt.Errorf("open through the mount: %w", err)
	}
	var files []*os.File
	release := func() {
		for _, file := range files {
			file.Close() // closing drops this process's locks on the file
		}
	}
	files = append(files, db)
	if err := lockRange(ctx, db, pendingByte, 1); err != nil {
		release()
		return nil, err
	}
	if err := lockRange(ctx, db, sharedFirst, sharedSize); err != nil {
		release()
		return nil, err
	}
	shm, err := os.OpenFile(path+"-shm", os.O_RDWR, 0)
	if err == nil {
		files = append(files, shm)
		if err := lockRange(ctx, shm, walLockOffset, walLockCount); err != nil {
			release()
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		release()
		return nil, fmt.Errorf("open WAL index through the mount: %w", err)
	}
	return release, nil
}

// lockRange takes a write lock on len bytes at start, retrying while
// another process holds a conflicting lock, until ctx ends.
func lockRange(ctx context.Context, f *os.File, start, n int64) error {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: start, Len: n}
	wait := lockPollInitial
	for {
		err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, lockPollMax)
	}
}

// walWriteLock is the byte of the -shm file that SQLite's WAL writer
// locks for the length of a write transaction.
const walWriteLock = walLockOffset

// FenceWriters implements ferry.WriterFence. The lock is an open file
// description lock taken through the mount: unlike a process's POSIX locks
// it conflicts with SQLite connections in Ferry's own process too, and it
// is not dropped when Ferry closes another descriptor of the file. The
// descriptor itself stays open until unmount (or until the file is
// replaced), because closing it would drop every POSIX lock this process
// holds on the file.
func (f *FS) FenceWriters(name string) (unfence func(), busy bool, err error) {
	_, unfence, busy, err = f.holdWALWriteLock(name)
	return unfence, busy, err
}

// fenceFile is a database's -shm opened through the mount, on which this
// process takes SQLite's WAL write lock. holds counts who relies on the
// lock (a writer fence, a change set being appended to the WAL): the lock
// is an open file description lock, so a second taker would not conflict
// with the first, and it is dropped only when the last one lets go.
type fenceFile struct {
	shm   *os.File
	holds int
}

// holdWALWriteLock takes SQLite's WAL write lock of database name through
// the mount without waiting, or joins this process's hold of it, and
// returns the -shm descriptor it is held on. busy is true when a
// connection holds the lock.
func (f *FS) holdWALWriteLock(name string) (shm *os.File, release func(), busy bool, err error) {
	path := filepath.Join(f.opts.Dir, filepath.FromSlash(name)) + "-shm"
	f.fencesMu.Lock()
	defer f.fencesMu.Unlock()
	ff := f.fences[name]
	if ff != nil && !sameFile(ff.shm, path) {
		if ff.holds == 0 {
			ff.shm.Close()
		}
		delete(f.fences, name)
		ff = nil
	}
	if ff == nil {
		shm, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			// No connection shares a WAL index: one in exclusive locking
			// mode holds the database itself. Nothing can be fenced until
			// it lets go.
			return nil, nil, true, nil
		} else if err != nil {
			return nil, nil, false, fmt.Errorf("open WAL index through the mount: %w", err)
		}
		ff = &fenceFile{shm: shm}
		f.fences[name] = ff
	}
	if ff.holds == 0 {
		if err := ofdLock(ff.shm, unix.F_WRLCK); err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
				return nil, nil, true, nil
			}
			return nil, nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	ff.holds++
	var once sync.Once
	return ff.shm, func() {
		once.Do(func() {
			f.fencesMu.Lock()
			defer f.fencesMu.Unlock()
			ff.holds--
			if ff.holds > 0 {
				return
			}
			if f.fences[name] != ff {
				ff.shm.Close() // replaced meanwhile; closing drops the lock
				return
			}
			if err := ofdLock(ff.shm, unix.F_UNLCK); err != nil {
				f.logger.Error("give back WAL write lock", "name", name, "err", err)
			}
		})
	}, false, nil
}

// ofdLock sets (or with F_UNLCK clears) an open file description lock on
// SQLite's WAL write lock byte, without waiting.
func ofdLock(shm *os.File, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: walWriteLock, Len: 1}
	return unix.FcntlFlock(shm.Fd(), unix.F_OFD_SETLK, &lk)
}

// sameFile reports whether f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// dropFences closes every fence descriptor, so that the mount can be
// unmounted.
func (f *FS) dropFences() {
	f.fencesMu.Lock()
	defer f.fencesMu.Unlock()
	for name, ff := range f.fences {
		ff.shm.Close()
		delete(f.fences, name)
	}
}

// selfOpenFlags returns FOPEN_NOFLUSH for a file that Ferry's own process
// opens through its mount (to take SQLite's locks while it applies a
// change set, or to fence writers). Closing a FUSE file normally waits for
// the daemon to answer a FLUSH request; when Ferry is killed, the kernel
// closes these descriptors as the process exits, and a FLUSH sent to the
// dying process itself would never be answered: the process would hang
// in the kernel, and every application using the mount with it. Ferry
// never writes through these descriptors, so there is nothing to flush.
func (f *FS) selfOpenFlags(ctx context.Context) uint32 {
	if c, ok := fuse.FromContext(ctx); ok && isOwnThread(c.Pid) {
		return fuse.FOPEN_NOFLUSH
	}
	return 0
}

// isOwnThread reports whether tid, the thread the kernel names as the
// caller of a FUSE request, belongs to this process.
func isOwnThread(tid uint32) bool {
	if tid == 0 {
		return false
	}
	var st unix.Stat_t
	return unix.Stat("/proc/self/task/"+strconv.FormatUint(uint64(tid), 10), &st) == nil
}

// LockWALWriter implements ferry.WALWriterLock: it takes SQLite's WAL
// write lock as FenceWriters does, and returns the -shm opened through the
// mount, so that what the store reads and writes there is what the
// connections that map it see.
func (f *FS) LockWALWriter(name string) (shm *os.File, unlock func(), busy bool, err error) {
	return f.holdWALWriteLock(name)
}
