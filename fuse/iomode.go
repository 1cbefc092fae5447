package fuse

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/hanwen/go-fuse/v2/fs"
)

// openModes counts a node's open handles by how the kernel reads and
// writes them. The kernel serves a passthrough handle from the backing
// file directly and every other handle through its page cache and Ferry,
// and it refuses, with EIO to the application, to open one kind while the
// other is open on the same inode. A file's role can change while it is
// open (an empty file is a database candidate until its first write), so
// the mode of a new handle follows the handles already open.
type openModes struct {
	mu     sync.Mutex
	cached int // handles served through Ferry
	direct int // passthrough handles
}

// directWait bounds how long opening a database file waits for passthrough
// handles to be released: the kernel forgets a closed handle before Ferry
// hears of its release.
const directWait = time.Second

// handle returns the handle for an opened file: a database file, or a
// plain file while handles served through Ferry are open, gets a handle
// served through Ferry; any other plain file keeps the loopback handle, and
// with it passthrough.
//
// A WAL is served by passthrough while its database may be written here
// (writable) or while another passthrough handle of it is open, and
// through Ferry otherwise.
func (n *node) handle(fh fs.FileHandle, role ferry.FileRole, db *ferry.DB, name string, writable bool) (fs.FileHandle, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh, 0
	}
	m := &n.modes
	if role == ferry.RoleWAL && db != nil && !db.IsPlain() {
		m.mu.Lock()
		if m.direct > 0 || (writable && m.cached == 0) {
			m.direct++
			m.mu.Unlock()
			db.WALBypassOpened()
			return &walFile{LoopbackFile: lf, db: db, name: name, fsys: n.fsys, node: n}, 0
		}
		m.cached++
		m.mu.Unlock()
		return n.fsys.newFile(lf, role, db, name, n), 0
	}
	if role == ferry.RolePlain || db == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cached > 0 {
			m.cached++
			return n.fsys.newFile(lf, ferry.RolePlain, nil, name, n), 0
		}
		m.direct++
		return &directFile{LoopbackFile: lf, node: n}, 0
	}
	deadline := time.Now().Add(directWait)
	for {
		m.mu.Lock()
		if m.direct == 0 {
			m.cached++
			m.mu.Unlock()
			return n.fsys.newFile(lf, role, db, name, n), 0
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			n.fsys.logger.Warn("refusing to open a database file that is open as a plain file", "name", name, "role", role)
			lf.Release(context.Background())
			return nil, syscall.EBUSY
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// released records that a handle of the given kind was closed.
func (m *openModes) released(direct bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if direct {
		m.direct--
	} else {
		m.cached--
	}
}

// directFile is a plain file's loopback handle, counted so that no handle
// served through Ferry is opened next to it.
type directFile struct {
	*fs.LoopbackFile
	node *node
}

var _ fs.FileReleaser = (*directFile)(nil)

// Release closes the backing file.
func (d *directFile) Release(ctx context.Context) syscall.Errno {
	d.node.modes.released(true)
	return d.LoopbackFile.Release(ctx)
}
