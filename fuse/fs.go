package fuse

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configures a mount.
type Options struct {
	// Dir is the mount point. It is created if missing.
	Dir string

	// AllowOther lets users other than the one running Ferry use the mount
	// (FUSE's allow_other; non-root mounts need user_allow_other in
	// /etc/fuse.conf).
	AllowOther bool

	// Debug logs every FUSE request.
	Debug bool

	// Logger receives the mount's logs; nil discards them.
	Logger *slog.Logger

	// CountOp, when set, is called with the name of every kernel request
	// of the common kinds ("read", "write", "lookup", …), for metrics.
	CountOp func(op string)
}

// cacheTimeout is how long the kernel may cache attributes and directory
// entries. Everything that changes a file goes through the mount, except
// the store's own changes, which invalidate explicitly, so it can be long.
const cacheTimeout = time.Hour

// uncachedTimeout makes the kernel ask again soon: used for the metadata
// files, whose content changes with every commit.
const uncachedTimeout = time.Nanosecond

// entryTimeout sets how long the kernel may cache a directory entry. A
// rollback journal's entry is not cached at all: whether it is shown
// decides whether SQLite can write (see hideStaleJournal).
func entryTimeout(out *fuse.EntryOut, role ferry.FileRole) {
	if role == ferry.RoleJournal {
		out.SetEntryTimeout(0)
		return
	}
	out.SetEntryTimeout(cacheTimeout)
}

// MetaDirName is the read-only directory at the root of the mount in which
// Ferry publishes per-database information:
//
//	.ferry/pos/<name>      the database's position, "TXID/CHECKSUM" in hex
//	.ferry/primary/<name>  the node holding the database's write lease,
//	                       absent when nobody holds it
//
// The name cannot be created by applications, so it never collides with a
// database or a file SQLite makes.
const MetaDirName = ".ferry"

// FS is a mounted Ferry filesystem.
type FS struct {
	store  *ferry.Store
	opts   Options
	logger *slog.Logger
	server *fuse.Server
	root   *node

	// fences are the -shm files, by database, that writer fences are
	// taken on (see FenceWriters); Unmount closes them.
	fencesMu sync.Mutex
	fences   map[string]*fenceFile
}

// Mount mounts store at opts.Dir and serves it until Unmount. The store
// must be open.
func Mount(store *ferry.Store, opts Options) (*FS, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create mount point: %w", err)
	}
	fsys := &FS{store: store, opts: opts, logger: logger, fences: make(map[string]*fenceFile)}
	lroot := &fs.LoopbackRoot{Path: store.Layout().TreeDir()}
	var st syscall.Stat_t
	if err := syscall.Stat(lroot.Path, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", lroot.Path, err)
	}
	lroot.Dev = uint64(st.Dev)
	fsys.root = &node{LoopbackNode: &fs.LoopbackNode{RootData: lroot}, fsys: fsys}
	lroot.RootNode = fsys.root

	timeout := cacheTimeout
	mopts := &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: opts.AllowOther,
			Debug:      opts.Debug,
			FsName:     "ferry",
			Name:       "ferry",
			// Mount with mount(2) when running as root, so that no
			// fusermount binary is needed; go-fuse falls back to
			// fusermount otherwise.
			DirectMount: true,
			// The store invalidates the page cache itself whenever it
			// changes a file; the kernel must not drop it on every
			// attribute change that the application's own writes cause.
			ExplicitDataCacheControl: true,
			MaxWrite:                 1 << 20,
			// EnableLocks stays off: the kernel then handles SQLite's
			// POSIX locks itself, across every process on this node.
		},
		// Entry timeouts are set per entry (see entryTimeout): a rollback
		// journal's entry must never be cached.
		// Report mode 000 as 000: SQLite's suite, and applications, use it
		// to make a file unreadable.
		NullPermissions: true,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
	}
	if opts.AllowOther {
		// With allow_other every user reaches the files, and Ferry runs as
		// root: let the kernel enforce their owners and modes. Without it
		// only the user who mounted reaches them, and the checks would cost
		// a round trip for a directory's attributes after every file
		// created or removed in it.
		mopts.MountOptions.Options = append(mopts.MountOptions.Options, "default_permissions")
	}
	if opts.Debug {
		mopts.Logger = log.New(os.Stderr, "fuse: ", 0)
	}
	server, err := mountNodes(opts, fsys.root, mopts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", opts.Dir, err)
	}
	fsys.server = server
	store.SetInvalidator(fsys)
	store.SetDatabaseLocker(fsys)
	logger.Info("mounted", "dir", opts.Dir, "data", store.Layout().Dir)
	return fsys, nil
}

// Dir returns the mount point.
func (f *FS) Dir() string { return f.opts.Dir }

// Unmount unmounts the filesystem, retrying while files are busy for up to
// the context's deadline.
func (f *FS) Unmount(ctx context.Context) error {
	f.store.SetInvalidator(nil)
	f.store.SetDatabaseLocker(nil)
	f.dropFences()
	for {
		err := f.server.Unmount()
		if err == nil {
			f.server.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmount %s: %w", f.opts.Dir, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Wait blocks until the filesystem is unmounted.
func (f *FS) Wait() { f.server.Wait() }

// InvalidateFile drops the kernel's cached data, attributes and directory
// entry of the file at name, which the store changed underneath the mount.
func (f *FS) InvalidateFile(name string) {
	parent := f.root.EmbeddedInode()
	parts := strings.Split(name, "/")
	for _, p := range parts[:len(parts)-1] {
		if parent = parent.GetChild(p); parent == nil {
			return
		}
	}
	base := parts[len(parts)-1]
	if ch := parent.GetChild(base); ch != nil {
		if errno := ch.NotifyContent(0, 0); errno != 0 && errno != syscall.ENOENT {
			f.logger.Warn("invalidate cached data", "name", name, "err", errno)
		}
	}
	if errno := parent.NotifyEntry(base); errno != 0 && errno != syscall.ENOENT {
		f.logger.Warn("invalidate directory entry", "name", name, "err", errno)
	}
}

// relPath is the slash-separated path of child name of n, relative to the
// root.
func (n *node) relPath(name string) string {
	p := n.Path(n.Root())
	if p == "" {
		return name
	}
	return path.Join(p, name)
}

// validate checks a new path component, logging why it is refused: a
// component or path too long with ENAMETOOLONG, a reserved name with
// EPERM, and any other bad name with EINVAL.
func (f *FS) validate(n *node, name string) syscall.Errno {
	if err := ferry.ValidateComponent(name); err != nil {
		f.logger.Warn("refusing file name", "dir", n.Path(n.Root()), "name", fmt.Sprintf("%q", name), "err", err)
		return toErrno(err)
	}
	if n.IsRoot() && name == MetaDirName {
		f.logger.Warn("refusing reserved file name", "name", name)
		return syscall.EPERM
	}
	if depth := strings.Count(n.relPath(name), "/") + 1; depth > ferry.MaxNameDepth {
		f.logger.Warn("refusing path deeper than the limit", "path", n.relPath(name), "limit", ferry.MaxNameDepth)
		return syscall.ENAMETOOLONG
	}
	return 0
}

// toErrno maps an error from the store to what the application sees.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ferry.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, ferry.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, ferry.ErrInvalidName):
		return syscall.EINVAL
	default:
		return syscall.EIO
	}
}
