package fuse

import (
	"context"
	"syscall"

	"github.com/ferrydb/ferry"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// walFile is a handle of a database's write-ahead log on a node that may
// write the database. It offers the kernel its backing descriptor, so that
// reads and writes go straight to the backing file (FUSE passthrough) and a
// WAL-mode commit costs no round trip through Ferry. The store reads the
// commits from the backing WAL instead (see ferry.DB.CatchUpWAL); what
// still reaches Ferry (fsync, truncate, close) makes it catch up first.
//
// Where the kernel does not offer passthrough, writes arrive here and are
// checked and written like any other; the store reads them from the file
// in the same way.
type walFile struct {
	*fs.LoopbackFile
	db   *ferry.DB
	name string
	fsys *FS
	node *node
}

var (
	_ fs.FilePassthroughFder = (*walFile)(nil)
	_ fs.FileWriter          = (*walFile)(nil)
	_ fs.FileFsyncer         = (*walFile)(nil)
	_ fs.FileSetattrer       = (*walFile)(nil)
	_ fs.FileReleaser        = (*walFile)(nil)
	_ fs.FileAllocater       = (*walFile)(nil)
)

// Write is only called when the kernel does not pass writes through.
func (w *walFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if err := w.db.CheckWrite(ctx); err != nil {
		w.fsys.logger.Debug("refusing write to read-only database", "name", w.name, "err", err)
		return 0, syscall.EROFS
	}
	return w.LoopbackFile.Write(ctx, data, off)
}

// Fsync syncs the WAL, and with it every change set it holds.
func (w *walFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := syncBacking(w.LoopbackFile, flags); errno != 0 {
		return errno
	}
	if err := w.db.WALSynced(); err != nil {
		return syscall.EIO
	}
	return waitSynchronous(w.db)
}

// Setattr captures the WAL's commits before a truncate can drop frames.
func (w *walFile) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return resize(ctx, ferry.RoleWAL, w.db, in, func() syscall.Errno { return w.LoopbackFile.Setattr(ctx, in, out) })
}

// Allocate preallocates space; it does not change content.
func (w *walFile) Allocate(ctx context.Context, off uint64, sz uint64, mode uint32) syscall.Errno {
	if err := w.db.CheckWrite(ctx); err != nil {
		return syscall.EROFS
	}
	return w.LoopbackFile.Allocate(ctx, off, sz, mode)
}

// Release closes the backing file; the store captures what the WAL holds.
func (w *walFile) Release(ctx context.Context) syscall.Errno {
	w.node.modes.released(true)
	w.db.WALBypassClosed()
	return w.LoopbackFile.Release(ctx)
}
