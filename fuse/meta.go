package fuse

import (
	"context"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Kinds of per-database metadata files under MetaDirName.
const (
	metaPos     = "pos"
	metaPrimary = "primary"
)

// metaDir is a read-only directory of the metadata tree: the root, or a
// directory of a kind's tree mirroring the databases' directories.
type metaDir struct {
	fs.Inode
	fsys   *FS
	kind   string // "" for .ferry itself
	prefix string // directory inside the kind's tree
}

// metaFile is one database's metadata file; its content is computed on
// every open.
type metaFile struct {
	fs.Inode
	fsys *FS
	kind string
	name string
}

var (
	_ fs.NodeLookuper  = (*metaDir)(nil)
	_ fs.NodeReaddirer = (*metaDir)(nil)
	_ fs.NodeGetattrer = (*metaDir)(nil)
	_ fs.NodeOpener    = (*metaFile)(nil)
	_ fs.NodeGetattrer = (*metaFile)(nil)
	_ fs.NodeReader    = (*metaFile)(nil)
	_ fs.NodeSetattrer = (*metaFile)(nil)
	_ fs.FileReader    = (*metaHandle)(nil)
	_ fs.FileGetattrer = (*metaHandle)(nil)
	_ fs.NodeOpendirer = (*metaDir)(nil)
	_ fs.NodeStatfser  = (*metaDir)(nil)
	_ fs.NodeAccesser  = (*metaFile)(nil)
	_ fs.NodeAccesser  = (*metaDir)(nil)
)

// metaRoot looks up the metadata directory at the root.
func (f *FS) metaRoot(ctx context.Context, root *node, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	return root.NewInode(ctx, &metaDir{fsys: f}, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *metaDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

func (d *metaDir) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (d *metaDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return 0 }

func (d *metaDir) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 != 0 {
		return syscall.EROFS
	}
	return 0
}

// children lists the entries of the directory: names and whether each is
// a directory.
func (d *metaDir) children() map[string]bool {
	out := make(map[string]bool)
	if d.kind == "" {
		out[metaPos], out[metaPrimary] = true, true
		return out
	}
	prefix := ""
	if d.prefix != "" {
		prefix = d.prefix + "/"
	}
	for _, name := range d.fsys.store.DBs() {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			out[rest[:i]] = true
		} else if d.kind != metaPrimary || d.fsys.holder(name) != "" {
			out[rest] = false
		}
	}
	return out
}

func (d *metaDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	isDir, ok := d.children()[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	out.SetEntryTimeout(uncachedTimeout)
	out.SetAttrTimeout(uncachedTimeout)
	if isDir {
		out.Mode = syscall.S_IFDIR | 0o555
		kind, prefix := d.kind, path.Join(d.prefix, name)
		if d.kind == "" {
			kind, prefix = name, ""
		}
		return d.NewInode(ctx, &metaDir{fsys: d.fsys, kind: kind, prefix: prefix}, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
	}
	mf := &metaFile{fsys: d.fsys, kind: d.kind, name: path.Join(d.prefix, name)}
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(len(mf.content()))
	return d.NewInode(ctx, mf, fs.StableAttr{Mode: syscall.S_IFREG}), 0
}

func (d *metaDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	children := d.children()
	names := make([]string, 0, len(children))
	for name := range children {
		names = append(names, name)
	}
	sort.Strings(names)
	entries := make([]fuse.DirEntry, 0, len(names))
	for _, name := range names {
		mode := uint32(syscall.S_IFREG)
		if children[name] {
			mode = syscall.S_IFDIR
		}
		entries = append(entries, fuse.DirEntry{Name: name, Mode: mode})
	}
	return fs.NewListDirStream(entries), 0
}

// holder returns the node holding name's lease, or "".
func (f *FS) holder(name string) string {
	v := f.store.LeaseView()
	if v == nil {
		return ""
	}
	node, _, ok := v.Holder(name)
	if !ok {
		return ""
	}
	return node
}

// content is the file's current content.
func (m *metaFile) content() []byte {
	switch m.kind {
	case metaPos:
		pos, err := m.fsys.store.Pos(m.name)
		if err != nil {
			return nil
		}
		return []byte(pos.String() + "\n")
	case metaPrimary:
		if h := m.fsys.holder(m.name); h != "" {
			return []byte(h + "\n")
		}
	}
	return nil
}

func (m *metaFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(len(m.content()))
	out.SetTimeout(uncachedTimeout)
	return 0
}

func (m *metaFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (m *metaFile) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 != 0 {
		return syscall.EROFS
	}
	return 0
}

// Open snapshots the content; reads bypass the page cache so that every
// open sees the current value.
func (m *metaFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	return &metaHandle{data: m.content()}, fuse.FOPEN_DIRECT_IO, 0
}

func (m *metaFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := fh.(*metaHandle); ok {
		return h.Read(ctx, dest, off)
	}
	return (&metaHandle{data: m.content()}).Read(ctx, dest, off)
}

// metaHandle is an open metadata file.
type metaHandle struct{ data []byte }

func (h *metaHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}

func (h *metaHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(len(h.data))
	return 0
}
