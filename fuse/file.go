package fuse

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/ferrydb/ferry"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is an open database, journal, WAL or SHM file, or a plain file
// opened while the same file is open as a database candidate. It forwards every
// operation to the backing file and reports the ones that change a
// database to the store. It deliberately does not offer a passthrough file
// descriptor: the kernel would then write to the backing file directly and
// the store would miss the commit.
type file struct {
	lf    *fs.LoopbackFile
	f     *os.File
	name  string
	fsys  *FS
	node  *node
	class atomic.Pointer[fileClass]
	// outside is set when the handle wrote a database outside any
	// transaction: flushing or releasing it captures those writes.
	outside atomic.Bool
}

// fileClass is what the store takes a file to be, as of the node's
// rename generation gen.
type fileClass struct {
	role ferry.FileRole
	db   *ferry.DB
	gen  uint64
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
)

// newFile returns a handle served through Ferry for the loopback handle
// lf of node n.
func (f *FS) newFile(lf *fs.LoopbackFile, role ferry.FileRole, db *ferry.DB, name string, n *node) *file {
	// Dup the descriptor for the store's own reads of the same file; the
	// loopback handle closes its descriptor on release.
	fd := -1
	if pfd, ok := lf.PassthroughFd(); ok {
		fd, _ = syscall.Dup(pfd)
	}
	var osf *os.File
	if fd >= 0 {
		osf = os.NewFile(uintptr(fd), name)
	}
	h := &file{lf: lf, f: osf, name: name, fsys: f, node: n}
	c := &fileClass{role: role, db: db}
	if n != nil {
		c.gen = n.renames.Load()
	}
	h.class.Store(c)
	return h
}

// classify returns what the file is now. A handle was classified under
// the name it was opened by; after its file is renamed, writes through it
// count for whatever the file is under its new name, and for nothing once
// a rename replaced it.
func (h *file) classify() (ferry.FileRole, *ferry.DB) {
	c := h.class.Load()
	if h.node == nil {
		return c.role, c.db
	}
	if gen := h.node.renames.Load(); gen != c.gen {
		c = &fileClass{role: ferry.RolePlain, gen: gen}
		if !h.node.replaced.Load() {
			if role, db, err := h.fsys.store.Classify(h.node.Path(h.node.Root())); err == nil && db != nil {
				c.role, c.db = role, db
			}
		}
		h.class.Store(c)
	}
	return c.role, c.db
}

// tracked returns the database that writes to the file change, with the
// file's role in it, or nil.
func (h *file) tracked() (ferry.FileRole, *ferry.DB) {
	role, db := h.classify()
	if db == nil || role == ferry.RoleSHM || role == ferry.RolePlain || db.IsPlain() {
		return role, nil
	}
	return role, db
}

// Read reads from the backing file.
func (h *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, buf, off)
}

// Write checks that the database may be written here, writes, and tells
// the store.
func (h *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	role, db := h.tracked()
	if db == nil {
		return h.lf.Write(ctx, data, off)
	}
	if err := db.CheckWrite(ctx); err != nil {
		h.fsys.logger.Debug("refusing write to read-only database", "name", h.name, "err", err)
		return 0, syscall.EROFS
	}
	if role == ferry.RoleDB {
		// A checkpoint: it must not overtake commits still unread in the WAL.
		if err := db.CatchUpWAL(); err != nil {
			return 0, syscall.EIO
		}
		if err := db.CheckDBWrite(off, data); err != nil && !errors.Is(err, ferry.ErrNotCheckpoint) {
			h.fsys.logger.Error("check database write", "name", h.name, "err", err)
			return 0, syscall.EIO
		}
	}
	n, errno := h.lf.Write(ctx, data, off)
	if errno != 0 {
		return n, errno
	}
	data = data[:n]
	var err error
	switch role {
	case ferry.RoleDB:
		if db.DBWritten(off, data) {
			h.outside.Store(true)
		}
	case ferry.RoleJournal:
		err = db.JournalWritten(off, data)
	case ferry.RoleWAL:
		if h.f != nil {
			err = db.WALWritten(h.f, off, data)
		}
	}
	if err != nil {
		return 0, syscall.EIO
	}
	if role == ferry.RoleJournal && off == 0 {
		// Zeroing the header commits in PERSIST mode.
		if errno := waitSynchronous(db); errno != 0 {
			return 0, errno
		}
	}
	return n, 0
}

// Fsync syncs the backing file, and with it the change sets the
// application's sync covers.
func (h *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := syncBacking(h.lf, flags); errno != 0 {
		return errno
	}
	role, db := h.tracked()
	if db == nil {
		return 0
	}
	var err error
	switch role {
	case ferry.RoleDB:
		err = db.DBSynced()
	case ferry.RoleWAL:
		err = db.WALSynced()
	}
	if err != nil {
		return syscall.EIO
	}
	return waitSynchronous(db)
}

// Flush is called on every close of a descriptor, before close returns.
// When an application closes a database, its change sets are written to
// the LTX log right away rather than with the next group.
func (h *file) Flush(ctx context.Context) syscall.Errno {
	errno := h.captureWritesOutside()
	if role, db := h.tracked(); role == ferry.RoleDB && db != nil {
		if err := db.Sync(); err != nil {
			h.fsys.logger.Error("write change sets", "name", h.name, "err", err)
		}
	}
	if ferr := h.lf.Flush(ctx); ferr != 0 {
		return ferr
	}
	return errno
}

// captureWritesOutside makes the pages this handle wrote to a database
// outside any transaction a change set: the writer is done with them.
func (h *file) captureWritesOutside() syscall.Errno {
	if !h.outside.Swap(false) {
		return 0
	}
	role, db := h.tracked()
	if role != ferry.RoleDB || db == nil {
		return 0
	}
	if err := db.CaptureWritesOutside(); err != nil {
		h.fsys.logger.Error("capture writes made outside a transaction", "name", h.name, "err", err)
		return syscall.EIO
	}
	return 0
}

// Release closes the backing file, after capturing writes made through
// the handle since it was flushed (a shared mapping's, written back late).
func (h *file) Release(ctx context.Context) syscall.Errno {
	_ = h.captureWritesOutside()
	if h.f != nil {
		h.f.Close()
	}
	if h.node != nil {
		h.node.modes.released(false)
	}
	return h.lf.Release(ctx)
}

// Getattr returns the backing file's attributes.
func (h *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}

// Setattr changes attributes; a size change is reported to the store.
func (h *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	role, db := h.tracked()
	if _, ok := in.GetSize(); ok && role == ferry.RoleDB && db != nil {
		// A truncate outside a transaction is captured like a write.
		h.outside.Store(true)
	}
	return resize(ctx, role, db, in, func() syscall.Errno { return h.lf.Setattr(ctx, in, out) })
}

// Lseek supports SEEK_DATA and SEEK_HOLE.
func (h *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

// Allocate preallocates space; it does not change content.
func (h *file) Allocate(ctx context.Context, off uint64, sz uint64, mode uint32) syscall.Errno {
	if _, db := h.tracked(); db != nil {
		if err := db.CheckWrite(ctx); err != nil {
			return syscall.EROFS
		}
	}
	return h.lf.Allocate(ctx, off, sz, mode)
}

// fsyncDataOnly is FUSE_FSYNC_FDATASYNC: the application called fdatasync.
const fsyncDataOnly = 1

// syncBacking flushes the backing file the way the application asked.
// go-fuse's loopback always does a full fsync; fdatasync, which SQLite
// uses, skips the journal commit for the file's times on filesystems such
// as ext4 when the file's size and blocks did not change.
func syncBacking(lf *fs.LoopbackFile, flags uint32) syscall.Errno {
	fd, ok := lf.PassthroughFd()
	if !ok {
		return syscall.EBADF
	}
	if flags&fsyncDataOnly != 0 {
		return fs.ToErrno(unix.Fdatasync(fd))
	}
	return fs.ToErrno(unix.Fsync(fd))
}
