package ferry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// A node's local history of a database can differ from the bucket's: a
// holder killed before it uploaded its last commits comes back after
// another node has written on top of the bucket. Such a copy must never be
// written on or served as if it were the database's history. The store
// moves it, with its log, to a lost+found directory where an operator can
// inspect it, and starts again from the bucket's state.

// ChecksumAt returns the post-apply checksum that database name's local
// log records at txid. ok is false when no local LTX file ends exactly at
// txid, so the log cannot tell. Change sets the flusher merged into one
// file, but that are still kept one by one in memory for a reader's
// stream, count as ending where they do.
func (s *Store) ChecksumAt(name string, txid ltx.TXID) (sum ltx.Checksum, ok bool, err error) {
	if err := ValidateName(name); err != nil {
		return 0, false, err
	}
	if db := s.DB(name); db != nil {
		db.mu.Lock()
		pos := db.pos
		var mem ltx.Checksum
		for _, q := range append(db.recent[:len(db.recent):len(db.recent)], db.queue...) {
			if q.hdr.MaxTXID == txid {
				mem = q.post
			}
		}
		db.mu.Unlock()
		if pos.TXID == txid {
			return pos.PostApplyChecksum, true, nil
		}
		if mem != 0 {
			return mem, true, nil
		}
	}
	files, err := s.listLog(name)
	if err != nil {
		return 0, false, err
	}
	for _, f := range files {
		if f.MaxTXID != txid {
			continue
		}
		// Only the trailer is needed: the file was verified when the log
		// was loaded, and a follower asks on every poll while it is ahead.
		_, trailer, err := ltx.ReadFileEnds(f.Path)
		if err != nil {
			return 0, false, err
		}
		return trailer.PostApplyChecksum, true, nil
	}
	return 0, false, nil
}

// ReplaceDiverged sets database name's local copy aside and replaces it
// with the snapshot read from r, an LTX file starting at TXID 1 that holds
// the authoritative history's state (restored from the bucket). The
// database file, its WAL and every file of its local log are moved to a
// new directory under Layout.LostFoundDir, with a note saying why; the
// log then starts again from the snapshot, and the bucket position is
// recorded as the snapshot's, since it came from there. Connections see
// the new content at their next transaction. It returns the new position
// and the directory the old copy went to.
func (s *Store) ReplaceDiverged(ctx context.Context, name string, r io.Reader, reason string) (Pos, string, error) {
	if err := ValidateName(name); err != nil {
		return Pos{}, "", err
	}
	var aside string
	pos, err := s.applyLocking(ctx, name, func(d *DB) (Pos, error) {
		dir, err := d.setAsideLocked(reason)
		if err != nil {
			return Pos{}, err
		}
		aside = dir
		d.pos, d.lastHdr = Pos{}, ltx.Header{}
		d.sums, d.sum, d.pageN = nil, 0, 0
		d.broken = nil
		pos, err := d.applyLocked(ctx, r)
		if err != nil {
			return Pos{}, fmt.Errorf("after setting the old copy aside in %s: %w", dir, err)
		}
		if err := d.store.layout.WriteBucketPos(d.name, pos); err != nil {
			return Pos{}, fmt.Errorf("record bucket position: %w", err)
		}
		return pos, nil
	}, nil)
	if err != nil {
		return Pos{}, aside, fmt.Errorf("replace diverged copy of %q: %w", name, err)
	}
	s.logger.Error("local history diverged from the bucket: set the local copy aside and restored the bucket's",
		"db", name, "reason", reason, "set_aside", aside, "pos", pos)
	return pos, aside, nil
}

// setAsideLocked moves the database's current files to a new lost+found
// directory: a copy of the database file and of its WAL (the originals
// stay in place, open connections have them), and the local LTX log, which
// the snapshot replaces.
func (d *DB) setAsideLocked(reason string) (string, error) {
	if err := d.catchUpWALLocked(); err != nil {
		return "", err
	}
	if err := d.flushLocked(); err != nil {
		return "", err
	}
	dir := filepath.Join(d.store.layout.LostFoundDir(d.name), time.Now().UTC().Format("20060102T150405.000Z"))
	if err := os.MkdirAll(filepath.Join(dir, "ltx"), 0o755); err != nil {
		return "", fmt.Errorf("create lost+found directory: %w", err)
	}
	base := filepath.Base(d.store.layout.DBPath(d.name))
	src := d.store.layout.DBPath(d.name)
	if err := copyFile(src, filepath.Join(dir, base)); err != nil {
		return "", fmt.Errorf("copy database to %s: %w", dir, err)
	}
	if err := copyFile(src+"-wal", filepath.Join(dir, base+"-wal")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("copy WAL to %s: %w", dir, err)
	}
	files, err := d.store.listLog(d.name)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if err := os.Rename(f.Path, filepath.Join(dir, "ltx", filepath.Base(f.Path))); err != nil {
			return "", fmt.Errorf("move LTX file to %s: %w", dir, err)
		}
	}
	note := fmt.Sprintf("database: %s\nposition: %s\nreason: %s\n", d.name, d.pos, reason)
	if err := os.WriteFile(filepath.Join(dir, "REASON"), []byte(note), 0o644); err != nil {
		return "", fmt.Errorf("write note to %s: %w", dir, err)
	}
	for _, p := range []string{d.store.layout.PendingPath(d.name), d.indexPath(), d.store.layout.BucketPosPath(d.name)} {
		if err := removeIfExists(p); err != nil {
			return "", err
		}
	}
	if d.pending != nil {
		d.pending.Close()
		d.pending, d.pendingSize = nil, 0
	}
	return dir, syncDir(dir)
}

// SetAside lists the lost+found directories of database name, oldest
// first: copies of it set aside because they diverged from the bucket.
func (s *Store) SetAside(name string) ([]string, error) {
	root := s.layout.LostFoundDir(name)
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	var dirs []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	sort.Strings(dirs)
	return dirs, nil
}

// copyFile copies src to a new file dst and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var _ HistoryReplacer = (*Store)(nil)
