package ferry

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ferrydb/ferry/ltx"
)

// Layout names the files Ferry keeps under its data directory:
//
//	DATA/tree/<name>            the files the mount shows, as SQLite wrote them
//	DATA/meta/<name>/pos        the database's durable position
//	DATA/meta/<name>/ltx/       the local LTX log, <min>-<max>.ltx in hex
//
// <name> is the slash-separated path of the database inside the mount.
// Keeping the visible tree apart from the metadata means a database and its
// journal files keep their own names, and nothing Ferry adds can collide
// with a file an application creates.
type Layout struct {
	// Dir is the data directory (the config's data.dir).
	Dir string
}

// TreeDir is the directory that holds the files the mount shows.
func (l Layout) TreeDir() string { return filepath.Join(l.Dir, "tree") }

// DBPath is the backing file of database name.
func (l Layout) DBPath(name string) string {
	return filepath.Join(l.TreeDir(), filepath.FromSlash(name))
}

// MetaDir is the directory of database name's metadata.
func (l Layout) MetaDir(name string) string {
	return filepath.Join(l.Dir, "meta", filepath.FromSlash(name))
}

// PosPath is the file holding database name's durable position.
func (l Layout) PosPath(name string) string { return filepath.Join(l.MetaDir(name), "pos") }

// LTXDir is the directory of database name's local LTX log.
func (l Layout) LTXDir(name string) string { return filepath.Join(l.MetaDir(name), "ltx") }

// LTXPath is the path of the local LTX file covering TXIDs min through max.
func (l Layout) LTXPath(name string, min, max ltx.TXID) string {
	return filepath.Join(l.LTXDir(name), LTXFilename(min, max))
}

// LTXFilename formats the name of an LTX file covering min through max, the
// same form Litestream uses in the bucket.
func LTXFilename(min, max ltx.TXID) string {
	return fmt.Sprintf("%016x-%016x.ltx", uint64(min), uint64(max))
}

// ParseLTXFilename parses a name produced by LTXFilename.
func ParseLTXFilename(name string) (min, max ltx.TXID, err error) {
	var a, b uint64
	if len(name) != 16+1+16+4 || !strings.HasSuffix(name, ".ltx") || name[16] != '-' {
		return 0, 0, fmt.Errorf("invalid LTX filename %q", name)
	}
	if _, err := fmt.Sscanf(name, "%016x-%016x.ltx", &a, &b); err != nil {
		return 0, 0, fmt.Errorf("invalid LTX filename %q: %w", name, err)
	}
	if a == 0 || b < a {
		return 0, 0, fmt.Errorf("invalid LTX filename %q: bad TXID range", name)
	}
	return ltx.TXID(a), ltx.TXID(b), nil
}

// BucketPosPath is the file in which the replicator records the position of
// the newest change set of database name that the bucket holds. The local
// log never deletes an LTX file beyond it while a bucket is configured, so
// nothing is lost while the bucket is unreachable.
func (l Layout) BucketPosPath(name string) string {
	return filepath.Join(l.MetaDir(name), "bucket-pos")
}

// ChecksumIndexPath is the file in which a clean shutdown saves the
// checksum of every page of database name, so that the next start does not
// have to read the whole database. It is removed while the database is
// open, so a crash leaves none behind.
func (l Layout) ChecksumIndexPath(name string) string {
	return filepath.Join(l.MetaDir(name), "checksums")
}

// PendingPath is the log of database name's change sets that are durable
// but not yet written as LTX files: each record is an 8-byte big-endian
// length and one complete LTX file. Ferry appends to it when an
// application syncs, writes the LTX log in groups in the background, and
// empties it after each group. Recovery turns its records back into LTX
// files.
func (l Layout) PendingPath(name string) string {
	return filepath.Join(l.MetaDir(name), "pending")
}

// LostFoundDir is the directory under which copies of database name that
// diverged from the bucket's history are kept, one subdirectory each,
// named for when it was set aside (see Store.ReplaceDiverged). Ferry never
// deletes them.
func (l Layout) LostFoundDir(name string) string {
	return filepath.Join(l.Dir, "lost+found", filepath.FromSlash(name))
}
