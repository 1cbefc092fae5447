package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tmpPrefix marks files a FileBackend is still writing; List skips them.
const tmpPrefix = ".tmp-"

// abandonedAfter is how old a temporary file must be before List removes
// it: its writer was killed mid-write. Any write in progress, from any
// process sharing the directory, is far younger.
const abandonedAfter = time.Hour

// removeAbandoned removes the temporary file at p if it is abandoned.
func removeAbandoned(p string, d fs.DirEntry) {
	if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) > abandonedAfter {
		_ = os.Remove(p)
	}
}

// lockName is the file a FileBackend locks around conditional writes, so
// that two processes sharing a directory cannot both win a race.
const lockName = ".ferry-lock"

// FileBackend stores objects as plain files under a directory, one file per
// key, so that Ferry runs without any cloud account. LTX files are laid
// out as Litestream's file replica lays them out (see filePath), so that
// `litestream restore file://DIR/<name>` reads a database's history.
type FileBackend struct {
	root string
	mu   sync.Mutex // serializes conditional writes within this process
}

// NewFileBackend returns a backend rooted at dir, creating dir if needed.
func NewFileBackend(dir string) (*FileBackend, error) {
	if dir == "" {
		return nil, errors.New("file backend: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	b := &FileBackend{root: dir}
	if err := b.migrate(); err != nil {
		return nil, err
	}
	return b, nil
}

// path maps a key to its file, refusing keys that would escape the root.
func (b *FileBackend) path(key string) (string, error) {
	clean := path.Clean("/" + key)
	if key == "" || clean != "/"+key || strings.Contains(key, "\\") {
		return "", fmt.Errorf("file backend: invalid key %q", key)
	}
	return filepath.Join(b.root, filepath.FromSlash(filePath(key))), nil
}

// Put implements Backend. The file appears whole or not at all: it is
// written to a temporary file, synced and then linked or renamed in place.
func (b *FileBackend) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (string, error) {
	p, err := b.path(key)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("file backend: put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("file backend: put %s: %w", key, err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, want %d", n, size)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("file backend: put %s: %w", key, err)
	}

	if opts.IfNoneMatch || opts.IfMatch != "" {
		unlock, err := b.lock()
		if err != nil {
			return "", err
		}
		defer unlock()
	}
	switch {
	case opts.IfNoneMatch:
		// link fails if the target exists, atomically, where rename would
		// replace it.
		if err := os.Link(tmp.Name(), p); errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("file backend: put %s: %w: object exists", key, ErrPreconditionFailed)
		} else if err != nil {
			return "", fmt.Errorf("file backend: put %s: %w", key, err)
		}
	case opts.IfMatch != "":
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("file backend: put %s: %w: object does not exist", key, ErrPreconditionFailed)
		} else if err != nil {
			return "", fmt.Errorf("file backend: put %s: %w", key, err)
		}
		if etag := fileETag(fi); etag != opts.IfMatch {
			return "", fmt.Errorf("file backend: put %s: %w: ETag is %s, want %s", key, ErrPreconditionFailed, etag, opts.IfMatch)
		}
		if err := os.Rename(tmp.Name(), p); err != nil {
			return "", fmt.Errorf("file backend: put %s: %w", key, err)
		}
	default:
		if err := os.Rename(tmp.Name(), p); err != nil {
			return "", fmt.Errorf("file backend: put %s: %w", key, err)
		}
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return "", fmt.Errorf("file backend: put %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("file backend: put %s: %w", key, err)
	}
	return fileETag(fi), nil
}

// lock takes the process and directory-wide lock for a conditional write.
func (b *FileBackend) lock() (func(), error) {
	b.mu.Lock()
	f, err := os.OpenFile(filepath.Join(b.root, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("file backend: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		b.mu.Unlock()
		return nil, fmt.Errorf("file backend: lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		b.mu.Unlock()
	}, nil
}

// Get implements Backend.
func (b *FileBackend) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	p, err := b.path(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ObjectInfo{}, fmt.Errorf("file backend: get %s: %w", key, ErrObjectNotFound)
	} else if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("file backend: get %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("file backend: get %s: %w", key, err)
	}
	return f, ObjectInfo{Key: key, Size: fi.Size(), ETag: fileETag(fi), LastModified: fi.ModTime()}, nil
}

// List implements Backend.
func (b *FileBackend) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	// Walk only the deepest directory that the prefix fully names.
	dir := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = prefix[:i]
	}
	start := b.root
	if dir != "" {
		if parent, base := path.Split(dir); isLevelDir(base) {
			// A level's files live under <parent>/ltx/<level>/.
			dir = parent + "ltx/" + strconv.Itoa(levelOf(base))
		}
		p, err := b.path(dir)
		if err != nil {
			return nil, err
		}
		start = p
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) && !d.IsDir() {
			removeAbandoned(p, d)
			return nil
		}
		if d.IsDir() || d.Name() == lockName {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		key := fileKey(filepath.ToSlash(rel))
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while listing
		} else if err != nil {
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), ETag: fileETag(fi), LastModified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file backend: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Backend.
func (b *FileBackend) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		p, err := b.path(key)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file backend: delete %s: %w", key, err)
		}
	}
	return nil
}

// fileETag identifies one version of a file. Every Put creates a new inode,
// so inode, size and modification time change with each write.
func fileETag(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.Size(), fi.ModTime().UnixNano())
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
