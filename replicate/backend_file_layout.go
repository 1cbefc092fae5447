package replicate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferrydb/ferry/ltx"
)

// The file backend's tree. Keys name a level as four hex digits
// (<db>/0001/<min>-<max>.ltx), the layout of Litestream's S3 replica,
// which Ferry's S3 bucket uses as is. Litestream's file replica reads
// <db>/ltx/<level in decimal>/<min>-<max>.ltx instead, so that is where
// the file backend keeps LTX files; every other key is a file of its own
// name. The two forms cannot be confused: a level is never "ltx", and a
// decimal level directory is never four characters long.

// isLevelDir reports whether a key's path component names a level, as
// Ferry's keys do ("0000" to "0009").
func isLevelDir(s string) bool {
	if len(s) != 4 {
		return false
	}
	lv, err := strconv.ParseUint(s, 16, 16)
	return err == nil && lv <= SnapshotLevel && fmt.Sprintf("%04x", lv) == s
}

// levelOf returns the level a component accepted by isLevelDir names.
func levelOf(s string) int {
	lv, _ := strconv.ParseUint(s, 16, 16)
	return int(lv)
}

// isLTXName reports whether s is an LTX file name Ferry writes.
func isLTXName(s string) bool {
	_, _, err := ltx.ParseFilename(s)
	return err == nil
}

// filePath maps a key to its path under the root, in slash form.
func filePath(key string) string {
	rest, file := path.Split(key)
	parent, level := path.Split(strings.TrimSuffix(rest, "/"))
	if parent == "" || !isLevelDir(level) || !isLTXName(file) {
		return key
	}
	return parent + "ltx/" + strconv.Itoa(levelOf(level)) + "/" + file
}

// fileKey is the inverse of filePath.
func fileKey(p string) string {
	parts := strings.Split(p, "/")
	n := len(parts)
	if n < 4 || parts[n-3] != "ltx" || !isLTXName(parts[n-1]) {
		return p
	}
	lv, err := strconv.Atoi(parts[n-2])
	if err != nil || lv < 0 || lv > SnapshotLevel || strconv.Itoa(lv) != parts[n-2] {
		return p
	}
	return strings.Join(parts[:n-3], "/") + fmt.Sprintf("/%04x/", lv) + parts[n-1]
}

// migrate moves LTX files that older versions of Ferry stored under their
// key's own path (<db>/0001/<file>) to where Litestream looks for them.
// Each move is a rename, so a crash part way leaves every file whole, and
// the next start finishes the job. A file already present at the new
// path was written by a newer Ferry under the same key, and since objects
// are never overwritten it holds the same content.
func (b *FileBackend) migrate() error {
	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var oldDirs []string
	err = filepath.WalkDir(b.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != b.root && isLevelDir(d.Name()) {
				oldDirs = append(oldDirs, p)
			}
			return nil
		}
		dir := filepath.Dir(p)
		if filepath.Dir(dir) == b.root || !isLevelDir(filepath.Base(dir)) || !isLTXName(d.Name()) {
			return nil
		}
		dst := filepath.Join(filepath.Dir(dir), "ltx", strconv.Itoa(levelOf(filepath.Base(dir))), d.Name())
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if _, err := os.Stat(dst); err == nil {
			return os.Remove(p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Rename(p, dst); err != nil {
			return err
		}
		return syncDir(filepath.Dir(dst))
	})
	if err != nil {
		return fmt.Errorf("file backend: move LTX files to Litestream's layout: %w", err)
	}
	// Old level directories left empty go; anything else in them stays.
	for i := len(oldDirs) - 1; i >= 0; i-- {
		ents, err := os.ReadDir(oldDirs[i])
		if err != nil {
			continue
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				_ = os.Remove(filepath.Join(oldDirs[i], e.Name()))
			}
		}
		_ = os.Remove(oldDirs[i])
	}
	return nil
}
