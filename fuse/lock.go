package fuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
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
	lockPollMax     = 50 * time.Millisecond
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
