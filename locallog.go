package ferry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// LogFile is one file of a database's local LTX log: the change sets
// MinTXID through MaxTXID, in the file at Path.
type LogFile struct {
	MinTXID, MaxTXID ltx.TXID
	Path             string
	Size             int64
	ModTime          time.Time
}

// ListLog returns database name's local LTX files ordered by TXID. A
// missing log is an empty list. Names that are not LTX files (a temporary
// file still being written, say) are skipped; a file removed by retention
// while the directory is read is left out.
func (l Layout) ListLog(name string) ([]LogFile, error) {
	dir := l.LTXDir(name)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read local LTX log of %q: %w", name, err)
	}
	var files []LogFile
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		min, max, err := ParseLTXFilename(e.Name())
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, LogFile{MinTXID: min, MaxTXID: max, Path: filepath.Join(dir, e.Name()), Size: info.Size(), ModTime: info.ModTime()})
	}
	// ReadDir sorts by name, and fixed-width hex names sort by TXID.
	return files, nil
}

// OpenLogFile opens the local LTX file of database name that covers min
// through max. The error wraps fs.ErrNotExist when retention removed it.
func (l Layout) OpenLogFile(name string, min, max ltx.TXID) (*os.File, error) {
	f, err := os.Open(l.LTXPath(name, min, max))
	if err != nil {
		return nil, fmt.Errorf("open local LTX file of %q: %w", name, err)
	}
	return f, nil
}

// LogDatabases lists the databases that have a local LTX log directory.
func (l Layout) LogDatabases() ([]string, error) {
	root := filepath.Join(l.Dir, "meta")
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() || d.Name() != "ltx" || p == root {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if ValidateName(name) == nil && l.LTXDir(name) == p {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return names, nil
}

// ReadBucketPos returns the newest position of database name that the
// bucket is known to hold, as WriteBucketPos recorded it; the zero Pos
// when nothing is recorded.
func (l Layout) ReadBucketPos(name string) (Pos, error) {
	return readPosFile(l.BucketPosPath(name))
}

// WriteBucketPos records that the bucket holds database name up to pos.
// It is the only writer of the file: the local log keeps every file after
// it, so it is replaced atomically and never half written.
func (l Layout) WriteBucketPos(name string, pos Pos) error {
	path := l.BucketPosPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("record bucket position: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pos.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("record bucket position: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record bucket position: %w", err)
	}
	return nil
}

// readPosFile parses a file holding Pos.String(); a missing file is the
// zero Pos.
func readPosFile(path string) (Pos, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Pos{}, nil
	} else if err != nil {
		return Pos{}, fmt.Errorf("read position: %w", err)
	}
	return ParsePos(strings.TrimSpace(string(b)))
}

// ParsePos parses the form written by Pos.String.
func ParsePos(s string) (Pos, error) {
	var txid, chksum uint64
	if len(s) != 33 || s[16] != '/' {
		return Pos{}, fmt.Errorf("invalid position %q", s)
	}
	if _, err := fmt.Sscanf(s, "%016x/%016x", &txid, &chksum); err != nil {
		return Pos{}, fmt.Errorf("invalid position %q: %w", s, err)
	}
	return Pos{TXID: ltx.TXID(txid), PostApplyChecksum: ltx.Checksum(chksum)}, nil
}
