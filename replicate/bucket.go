package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// Bucket reads databases out of a backend under one key prefix. The
// Replicator uses it to restore and catch up; `ferry restore` uses it on
// its own.
type Bucket struct {
	backend Backend
	keys    keys
	logger  *slog.Logger
}

// NewBucket returns a Bucket for the databases under prefix in backend.
func NewBucket(backend Backend, prefix string, logger *slog.Logger) *Bucket {
	if logger == nil {
		logger = slog.Default()
	}
	return &Bucket{backend: backend, keys: newKeys(prefix), logger: logger}
}

// dbFiles is what the bucket holds for one database.
type dbFiles struct {
	levels   [SnapshotLevel + 1][]fileInfo // each sorted by MinTXID, then MaxTXID
	head     head
	headETag string
	hasHead  bool
	// nested is set when other databases' objects lie below this name.
	nested bool
}

// maxTXID returns the newest TXID in any level.
func (f *dbFiles) maxTXID() ltx.TXID {
	var max ltx.TXID
	for _, lv := range f.levels {
		for _, fi := range lv {
			if fi.MaxTXID > max {
				max = fi.MaxTXID
			}
		}
	}
	return max
}

// holds reports whether a file at any level ends at txid: the upload that
// announced txid arrived, whether or not it has been compacted since.
func (f *dbFiles) holds(txid ltx.TXID) bool {
	for _, lv := range f.levels {
		for _, fi := range lv {
			if fi.MaxTXID == txid {
				return true
			}
		}
	}
	return false
}

// add records a file, keeping its level sorted.
func (f *dbFiles) add(fi fileInfo) {
	lv := append(f.levels[fi.Level], fi)
	sort.Slice(lv, func(i, j int) bool {
		if lv[i].MinTXID != lv[j].MinTXID {
			return lv[i].MinTXID < lv[j].MinTXID
		}
		return lv[i].MaxTXID < lv[j].MaxTXID
	})
	f.levels[fi.Level] = lv
}

// remove forgets the files with the given keys.
func (f *dbFiles) remove(keys map[string]bool) {
	for l := range f.levels {
		kept := f.levels[l][:0]
		for _, fi := range f.levels[l] {
			if !keys[fi.Key] {
				kept = append(kept, fi)
			}
		}
		f.levels[l] = kept
	}
}

// list reads database name's head with one GET, then its files with one
// LIST.
//
// The head comes first so that the two agree. An upload writes the head
// before the object it announces (upload.go), so a listing taken after
// the head holds every object the head's predecessors announced; only the
// head's own newest object (LastMin..TXID) may still be in flight, and
// objects uploaded after the head was read lie past its TXID, where plans
// do not look. Listed the other way round, an upload landing in between
// would make the head announce objects the listing has never seen.
func (bk *Bucket) list(ctx context.Context, name string) (*dbFiles, error) {
	if err := ferry.ValidateName(name); err != nil {
		return nil, err
	}
	files := &dbFiles{}
	h, etag, ok, err := readHead(ctx, bk.backend, bk.keys.head(name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	files.head, files.headETag, files.hasHead = h, etag, ok
	prefix := bk.keys.db(name)
	objs, err := bk.backend.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, prefix)
		if rest == headName {
			continue
		}
		level, min, max, ok := parseLTXKey(rest)
		if !ok {
			files.nested = files.nested || nestedKey(rest)
			continue
		}
		files.levels[level] = append(files.levels[level], fileInfo{
			Level: level, MinTXID: min, MaxTXID: max, Size: o.Size,
			CreatedAt: o.LastModified.UnixMilli(), Key: o.Key,
		})
	}
	for l := range files.levels {
		lv := files.levels[l]
		sort.Slice(lv, func(i, j int) bool {
			if lv[i].MinTXID != lv[j].MinTXID {
				return lv[i].MinTXID < lv[j].MinTXID
			}
			return lv[i].MaxTXID < lv[j].MaxTXID
		})
	}
	return files, nil
}

// Exists reports whether the bucket holds any change set of database name.
func (bk *Bucket) Exists(ctx context.Context, name string) (bool, error) {
	files, err := bk.list(ctx, name)
	if err != nil {
		return false, err
	}
	return files.maxTXID() > 0, nil
}

// Databases lists the names of the databases under the bucket's prefix:
// every key prefix that holds a level directory with an LTX file.
func (bk *Bucket) Databases(ctx context.Context) ([]string, error) {
	root := ""
	if bk.keys.prefix != "" {
		root = bk.keys.prefix + "/"
	}
	objs, err := bk.backend.List(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	seen := map[string]bool{}
	var names []string
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, root)
		// <name>/<level>/<file>: the name is all but the last two parts.
		i := strings.LastIndex(rest, "/")
		if i < 0 {
			continue
		}
		j := strings.LastIndex(rest[:i], "/")
		if j <= 0 {
			continue
		}
		if _, _, _, ok := parseLTXKey(rest[j+1:]); !ok {
			continue
		}
		name := rest[:j]
		if !seen[name] && ferry.ValidateName(name) == nil {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// errNoHistory is returned when a database has no files at all.
var errNoHistory = errors.New("no LTX files in the bucket")
