package replicate

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/ferrydb/ferry/ltx"
)

// SnapshotLevel is the level that holds snapshots, as in Litestream.
const SnapshotLevel = 9

// headName is the name of each database's head object, beside its level
// directories, where Litestream's listing of a level never sees it.
const headName = "ferry-head.json"

// keys builds and parses the object keys of one bucket prefix.
type keys struct {
	prefix string // without leading or trailing slashes; may be empty
}

func newKeys(prefix string) keys {
	return keys{prefix: strings.Trim(prefix, "/")}
}

// db is the key prefix of database name's objects, ending in a slash.
func (k keys) db(name string) string {
	if k.prefix == "" {
		return name + "/"
	}
	return k.prefix + "/" + name + "/"
}

// ltx is the key of an LTX file.
func (k keys) ltx(name string, level int, min, max ltx.TXID) string {
	return fmt.Sprintf("%s%04x/%s", k.db(name), level, ltx.FormatFilename(min, max))
}

// head is the key of database name's head object.
func (k keys) head(name string) string { return k.db(name) + headName }

// fileInfo describes one LTX file in the bucket.
type fileInfo struct {
	Level     int
	MinTXID   ltx.TXID
	MaxTXID   ltx.TXID
	Size      int64
	CreatedAt int64 // LastModified, milliseconds since the Unix epoch
	Key       string
}

// nestedKey reports whether rest, a key after a database prefix, belongs to
// a database nested below that prefix: "<sub>/<level>/<file>.ltx" or
// "<sub>/ferry-head.json".
func nestedKey(rest string) bool {
	i := strings.LastIndex(rest, "/")
	if i <= 0 {
		return false
	}
	if rest[i+1:] == headName {
		return true
	}
	j := strings.LastIndex(rest[:i], "/")
	if j <= 0 {
		return false
	}
	_, _, _, ok := parseLTXKey(rest[j+1:])
	return ok
}

// parseLTXKey parses the part of a key after the database prefix, such as
// "0001/0000000000000001-0000000000000010.ltx". ok is false for anything
// else, including the objects of a database nested below this one.
func parseLTXKey(rest string) (level int, min, max ltx.TXID, ok bool) {
	dir, file := path.Split(rest)
	if len(dir) != 5 || strings.Count(rest, "/") != 1 {
		return 0, 0, 0, false
	}
	lv, err := strconv.ParseUint(dir[:4], 16, 16)
	if err != nil || lv > SnapshotLevel {
		return 0, 0, 0, false
	}
	min, max, err = ltx.ParseFilename(file)
	if err != nil {
		return 0, 0, 0, false
	}
	return int(lv), min, max, true
}
