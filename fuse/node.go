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
)

// renameExchange is Linux's RENAME_EXCHANGE flag of renameat2, which the
// syscall package does not name.
const renameExchange = 0x2

// node is a file or directory of the tree, passed through to the backing
// directory, with the store told about every change to a database.
type node struct {
	*fs.LoopbackNode
	fsys  *FS
	modes openModes
	// renames counts the renames that moved or replaced the file: open
	// handles classify it again under its new name (see file.classify).
	renames atomic.Uint64
	// replaced is set when a rename replaced the file: it has no name.
	replaced atomic.Bool
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeMkdirer     = (*node)(nil)
	_ fs.NodeMknoder     = (*node)(nil)
	_ fs.NodeSymlinker   = (*node)(nil)
	_ fs.NodeLinker      = (*node)(nil)
	_ fs.NodeUnlinker    = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
)

// WrapChild wraps every node the loopback layer creates, so the whole tree
// behaves like the root.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if ln, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: ln, fsys: n.fsys}
	}
	return ops
}

// Lookup finds a child. Names that could never be created are not found.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.IsRoot() && name == MetaDirName {
		return n.fsys.metaRoot(ctx, n, out)
	}
	rel := n.relPath(name)
	// A path too deep is checked here too, not only its last component:
	// otherwise it would go on to a restore from the bucket, which refuses
	// it, and mkdir would fail with EIO instead of ENAMETOOLONG.
	if ferry.ValidateName(rel) != nil {
		return nil, syscall.ENOENT
	}
	role, db, _ := n.fsys.store.Classify(rel)
	if role == ferry.RoleJournal {
		if errno := n.fsys.hideStaleJournal(ctx, db, rel); errno != 0 {
			return nil, errno
		}
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == syscall.ENOENT && role == ferry.RolePlain && n.fsys.store.Restorer() != nil {
		// A database that is not on this node yet: fetch it.
		if err := n.fsys.store.RestoreMissing(ctx, rel); err != nil {
			if !errors.Is(err, ferry.ErrDatabaseNotFound) {
				n.fsys.logger.Error("restore on demand", "name", rel, "err", err)
				return nil, syscall.EIO
			}
			// Not in the bucket either. A timeout keeps the kernel from
			// caching this answer as a negative entry, so a database that
			// appears later is found, and an open with O_CREAT looks it up
			// again rather than creating a stand-in for it.
			out.SetEntryTimeout(uncachedTimeout)
			return nil, syscall.ENOENT
		}
		ch, errno = n.LoopbackNode.Lookup(ctx, name, out)
	}
	if errno == 0 {
		entryTimeout(out, role)
	}
	return ch, errno
}

// hideStaleJournal removes a journal left over by PERSIST or TRUNCATE mode
// when this node may not write the database right now, so that SQLite
// tries to create a new one: that create takes the lease if it can, and
// otherwise fails in a way SQLite reports as read-only. A hot journal is
// kept: SQLite must be able to roll it back. Every read looks the journal
// up, so this never acquires the lease.
func (f *FS) hideStaleJournal(ctx context.Context, db *ferry.DB, rel string) syscall.Errno {
	if db.IsPlain() || db.WritableNow() {
		return 0
	}
	p := f.store.Layout().DBPath(rel)
	jf, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer jf.Close()
	b := make([]byte, 8)
	if n, _ := jf.ReadAt(b, 0); n == 8 && !allZero(b) {
		return 0 // possibly hot
	}
	if err := os.Remove(p); err != nil {
		return 0
	}
	return syscall.ENOENT
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Create creates a file. A new rollback journal of a database that may not
// be written here is refused with EACCES, which SQLite reports as
// "attempt to write a readonly database". A new WAL is allowed, since
// readers of a WAL-mode database need one; writes to it are refused. A
// file is not created under the name of a database whose lease another
// node holds: SQLite then reports "unable to open database file" until the
// database reaches the bucket and is restored on open.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fsys.validate(n, name); errno != 0 {
		return nil, nil, 0, errno
	}
	rel := n.relPath(name)
	role, db, err := n.fsys.store.Classify(rel)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	if role == ferry.RoleJournal && !db.IsPlain() {
		if err := db.CheckWrite(ctx); err != nil {
			n.fsys.logger.Debug("refusing to create journal of read-only database", "name", rel, "err", err)
			return nil, nil, 0, syscall.EACCES
		}
	}
	if role == ferry.RolePlain && n.fsys.store.ProbeLease(rel) == ferry.LeaseElsewhere {
		// Another node writes a database under this name that has not
		// reached the bucket yet (Lookup would have restored it). An empty
		// file here would stand in for it and hide it for good.
		n.fsys.logger.Info("not creating a local file for a database another node holds; it opens here once uploaded", "name", rel)
		return nil, nil, 0, syscall.EROFS
	}
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	entryTimeout(out, role)
	if role == ferry.RolePlain {
		// A new file may be a database being created: look again now that
		// it exists (empty files are database candidates).
		role, db, err = n.fsys.store.Classify(rel)
		if err != nil {
			fh.(fs.FileReleaser).Release(ctx)
			return nil, nil, 0, toErrno(err)
		}
	}
	chn, ok := ch.Operations().(*node)
	if !ok {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, nil, 0, syscall.EIO
	}
	// A WAL created by a reader on a node that does not hold the lease must
	// not make it try to take the lease: ask only what the node holds now.
	writable := role == ferry.RoleWAL && db.WALBypassAllowed()
	h, errno := chn.handle(fh, role, db, rel, writable)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, h, fuseFlags | fuse.FOPEN_KEEP_CACHE, 0
}

// Open opens a file. Opening an existing WAL for writing is refused while
// another node holds the database's lease or this node may never hold it,
// so SQLite opens it read-only and reports writes as read-only. Every
// WAL-mode reader opens the WAL for writing, so the open itself never
// takes the lease: while nobody holds it, the WAL is served through Ferry
// and its first write takes the lease.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	rel := n.Path(n.Root())
	role, db, err := n.fsys.store.Classify(rel)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	writable := false
	if role == ferry.RoleWAL && flags&syscall.O_ACCMODE != syscall.O_RDONLY && !db.IsPlain() {
		if err := db.WriteRefused(); err != nil {
			n.fsys.logger.Debug("opening the WAL of a read-only database read-only", "name", rel, "err", err)
			return nil, 0, syscall.EACCES
		}
		writable = db.WALBypassAllowed()
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	h, errno := n.handle(fh, role, db, rel, writable)
	if errno != 0 {
		return nil, 0, errno
	}
	return h, fuseFlags | fuse.FOPEN_KEEP_CACHE | n.fsys.selfOpenFlags(ctx), 0
}

// Mkdir creates a directory: databases may be laid out in subdirectories.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.fsys.validate(n, name); errno != 0 {
		return nil, errno
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	entryTimeout(out, ferry.RolePlain)
	return ch, errno
}

// Mknod creates a special file.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.fsys.validate(n, name); errno != 0 {
		return nil, errno
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	entryTimeout(out, ferry.RolePlain)
	return ch, errno
}

// Symlink creates a symbolic link.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.fsys.validate(n, name); errno != 0 {
		return nil, errno
	}
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	entryTimeout(out, ferry.RolePlain)
	return ch, errno
}

// Link creates a hard link. Linking to a database or its journals would
// let writes bypass the store's tracking, so it is refused.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.fsys.validate(n, name); errno != 0 {
		return nil, errno
	}
	if t, ok := target.(*node); ok {
		if role, _, _ := n.fsys.store.Classify(t.Path(t.Root())); role != ferry.RolePlain {
			n.fsys.logger.Warn("refusing hard link to a database file", "target", t.Path(t.Root()))
			return nil, syscall.EPERM
		}
	}
	role, _, _ := n.fsys.store.Classify(n.relPath(name))
	if role != ferry.RolePlain {
		return nil, syscall.EPERM
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	entryTimeout(out, ferry.RolePlain)
	return ch, errno
}

// Unlink removes a file. Removing a rollback journal is the commit in
// DELETE mode; the store captures it before the call returns.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	rel := n.relPath(name)
	role, db, _ := n.fsys.store.Classify(rel)
	// An empty file with no history holds nothing to lose, so it may go
	// without the lease.
	if role == ferry.RoleDB && db.IsDatabase() {
		if err := db.CheckRemove(ctx); err != nil {
			return syscall.EROFS
		}
	}
	if role == ferry.RoleWAL && !db.IsPlain() {
		if err := db.CatchUpWAL(); err != nil {
			return syscall.EIO
		}
	}
	if errno := n.LoopbackNode.Unlink(ctx, name); errno != 0 {
		return errno
	}
	if db == nil || db.IsPlain() {
		return 0
	}
	switch role {
	case ferry.RoleJournal:
		if err := db.JournalRemoved(); err != nil {
			return syscall.EIO
		}
		return waitSynchronous(db)
	case ferry.RoleWAL:
		db.WALRemoved()
	case ferry.RoleDB:
		n.fsys.store.Forget(rel)
	}
	return 0
}

// Rename renames a file. Journals, WAL indexes and plain files move as on
// any filesystem, and the store is told what the move means: a journal
// moved away is gone, which commits the transaction as a deletion does,
// and a journal moved in that starts with a journal header is hot, so the
// rollback SQLite makes from it is captured like a transaction. The store
// keeps a database's history by name, so a database renamed is deleted
// under its old name and taken as a new database, with a change set of
// every page, under its new one; the file keeps its inode, so connections
// that have it open notice the move as SQLite expects. A database with a
// transaction in progress or a WAL, and a directory that is not empty,
// are not renamed (EXDEV): tools such as mv then copy and delete, which
// the store captures. A file moved over a WAL is refused: its frames would
// be commits the store never saw.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if errno := n.fsys.validate(np, newName); errno != 0 {
		return errno
	}
	from, to := n.relPath(name), np.relPath(newName)
	fromRole, fromDB, err := n.fsys.store.Classify(from)
	if err != nil {
		return toErrno(err)
	}
	toRole, toDB, err := n.fsys.store.Classify(to)
	if err != nil {
		return toErrno(err)
	}
	tracked := func(role ferry.FileRole, db *ferry.DB) bool {
		return role != ferry.RolePlain && db != nil && !db.IsPlain()
	}
	for _, f := range []struct {
		name string
		role ferry.FileRole
		db   *ferry.DB
	}{{from, fromRole, fromDB}, {to, toRole, toDB}} {
		if !tracked(f.role, f.db) {
			continue
		}
		if flags&renameExchange != 0 {
			n.fsys.logger.Warn("refusing to exchange a database's companion file", "from", from, "to", to)
			return syscall.EPERM
		}
		if f.role == ferry.RoleJournal || f.role == ferry.RoleWAL {
			if err := f.db.CheckWrite(ctx); err != nil {
				n.fsys.logger.Debug("refusing to rename a journal of a read-only database", "name", f.name, "err", err)
				return syscall.EROFS
			}
		}
		if f.role == ferry.RoleWAL {
			if err := f.db.CatchUpWAL(); err != nil {
				return syscall.EIO
			}
		}
		if f.role == ferry.RoleDB && f.db.IsDatabase() {
			if err := f.db.CheckRemove(ctx); err != nil {
				return syscall.EROFS
			}
			if err := f.db.CheckRename(); err != nil {
				n.fsys.logger.Warn("not renaming a database in use; copy and delete it instead", "from", from, "to", to, "err", err)
				return syscall.EXDEV
			}
		}
	}
	if errno := n.fsys.checkDirRename(from); errno != 0 {
		return errno
	}
	if tracked(toRole, toDB) && toRole == ferry.RoleWAL {
		n.fsys.logger.Warn("refusing to rename over a write-ahead log: its frames would be commits that were never captured", "from", from, "to", to)
		return syscall.EPERM
	}
	moved, replaced := childNode(n, name), childNode(np, newName)
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if replaced != nil && replaced != moved {
		replaced.replaced.Store(true)
		replaced.renames.Add(1)
	}
	if moved != nil {
		moved.renames.Add(1)
	}
	if tracked(fromRole, fromDB) {
		switch fromRole {
		case ferry.RoleJournal:
			if err := fromDB.JournalRemoved(); err != nil {
				return syscall.EIO
			}
			if errno := waitSynchronous(fromDB); errno != 0 {
				return errno
			}
		case ferry.RoleWAL:
			fromDB.WALRemoved()
		}
	}
	if tracked(toRole, toDB) && toRole == ferry.RoleJournal {
		// The journal that was there is gone.
		if err := toDB.JournalRemoved(); err != nil {
			return syscall.EIO
		}
		if errno := waitSynchronous(toDB); errno != 0 {
			return errno
		}
	}
	// Neither name is what the store knew it as any more. A database under
	// the new name is taken up now, so that its history starts with the
	// rename rather than with its next write.
	if fromRole == ferry.RoleDB || fromRole == ferry.RolePlain {
		n.fsys.store.Forget(from)
	}
	if toRole == ferry.RoleDB || toRole == ferry.RolePlain {
		n.fsys.store.Forget(to)
	}
	role, db, err := n.fsys.store.Classify(to)
	if err != nil {
		n.fsys.logger.Error("take up renamed file", "name", to, "err", err)
		return syscall.EIO
	}
	if role == ferry.RoleJournal && !db.IsPlain() {
		if err := db.JournalMovedIn(n.fsys.store.Layout().DBPath(to)); err != nil {
			return syscall.EIO
		}
	}
	return 0
}

// checkDirRename refuses to rename a directory that is not empty: the
// databases in it would change names without the store moving their
// histories. mv then copies the tree and deletes it, which the store
// captures.
func (f *FS) checkDirRename(from string) syscall.Errno {
	dir, err := os.Open(f.store.Layout().DBPath(from))
	if err != nil {
		return 0 // gone, or not a directory: the rename itself says
	}
	defer dir.Close()
	fi, err := dir.Stat()
	if err != nil || !fi.IsDir() {
		return 0
	}
	if names, _ := dir.Readdirnames(1); len(names) > 0 {
		f.logger.Warn("not renaming a directory that is not empty; copy and delete it instead", "dir", from)
		return syscall.EXDEV
	}
	return 0
}

// childNode returns the node of parent's child name, or nil when the
// kernel does not know it.
func childNode(parent *node, name string) *node {
	ch := parent.GetChild(name)
	if ch == nil {
		return nil
	}
	cn, _ := ch.Operations().(*node)
	return cn
}

// Setattr changes attributes; a size change of a database file or journal
// is reported to the store.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	switch fh := f.(type) {
	case *file:
		return fh.Setattr(ctx, in, out)
	case *walFile:
		return fh.Setattr(ctx, in, out)
	}
	role, db, _ := n.fsys.store.Classify(n.Path(n.Root()))
	if role == ferry.RolePlain || role == ferry.RoleSHM || db.IsPlain() {
		db = nil
	}
	return resize(ctx, role, db, in, func() syscall.Errno { return n.LoopbackNode.Setattr(ctx, f, in, out) })
}

// resize changes attributes with apply. A size change of a file of
// database db (nil for a file no database tracks) must be allowed here,
// captures the WAL's commits first, since a truncate could drop frames not
// read yet, and is reported to the store.
func resize(ctx context.Context, role ferry.FileRole, db *ferry.DB, in *fuse.SetAttrIn, apply func() syscall.Errno) syscall.Errno {
	size, hasSize := in.GetSize()
	if hasSize && db != nil {
		if err := db.CheckWrite(ctx); err != nil {
			return syscall.EROFS
		}
		if err := db.CatchUpWAL(); err != nil {
			return syscall.EIO
		}
	}
	if errno := apply(); errno != 0 {
		return errno
	}
	if hasSize {
		return truncated(role, db, int64(size))
	}
	return 0
}

// truncated reports a size change to the store.
func truncated(role ferry.FileRole, db *ferry.DB, size int64) syscall.Errno {
	if db == nil || db.IsPlain() {
		return 0
	}
	switch role {
	case ferry.RoleDB:
		db.DBTruncated(size)
	case ferry.RoleJournal:
		if err := db.JournalTruncated(size); err != nil {
			return syscall.EIO
		}
		return waitSynchronous(db)
	case ferry.RoleWAL:
		db.WALTruncated(size)
	}
	return 0
}

// Getxattr is not supported. Answering ENOSYS once makes the kernel stop
// asking: otherwise it looks up security.capability before every write,
// one extra round trip per write.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Listxattr is not supported (see Getxattr).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Setxattr is not supported (see Getxattr).
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}

// Removexattr is not supported (see Getxattr).
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOSYS
}

// waitSynchronous answers a request that may have committed a transaction
// of db only once a synchronous database's change set is durable off this
// node (ferry.DB.WaitSynchronous); other databases return at once.
func waitSynchronous(db *ferry.DB) syscall.Errno {
	if err := db.WaitSynchronous(); err != nil {
		return syscall.EIO
	}
	return 0
}
