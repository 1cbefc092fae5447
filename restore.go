package ferry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// RestoreMissing fetches database name with the restorer when it does not
// exist locally, for the mount to call when an application opens a
// missing database. It returns an error wrapping ErrDatabaseNotFound when
// there is no restorer or the bucket has no such database. The restored
// database's log starts with one snapshot covering TXIDs 1 to its
// position, so TXIDs continue from there; the bucket position is recorded
// too, so that the snapshot is not uploaded again.
func (s *Store) RestoreMissing(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if s.restorer == nil {
		return fmt.Errorf("%q: %w", name, ErrDatabaseNotFound)
	}
	for _, c := range companionSuffixes {
		if strings.HasSuffix(name, c.suffix) {
			return fmt.Errorf("%q: %w", name, ErrDatabaseNotFound)
		}
	}
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	path := s.layout.DBPath(name)
	if _, err := os.Stat(path); err == nil {
		return nil // restored meanwhile
	}
	// A database with a position here was deleted through this mount: it
	// stays deleted, and one created again under its name continues its
	// history, rather than the old copy coming back from the bucket.
	if _, err := os.Stat(s.layout.PosPath(name)); err == nil {
		return fmt.Errorf("%q was deleted on this node: %w", name, ErrDatabaseNotFound)
	}
	meta := s.layout.MetaDir(name)
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return fmt.Errorf("create metadata directory: %w", err)
	}
	tmp := filepath.Join(meta, "restore.tmp")
	defer os.Remove(tmp)
	pos, err := s.restorer.Restore(ctx, name, tmp)
	if errors.Is(err, ErrDatabaseDirectory) {
		// The bucket has databases below name: make the directory, so
		// that they can be looked up and restored in turn.
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("restore directory %q: %w", name, err)
		}
		s.logger.Info("made directory of databases in the bucket", "dir", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore %q: %w", name, err)
	}
	if err := writeRestoredSnapshot(s.layout, name, tmp, pos); err != nil {
		return fmt.Errorf("restore %q: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("restore %q: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("restore %q: move into place: %w", name, err)
	}
	if _, err := s.lookupDB(name); err != nil {
		return err
	}
	s.logger.Info("restored database on demand", "db", name, "pos", pos)
	return nil
}

// writeRestoredSnapshot starts the local log of a restored database with a
// snapshot of the file at path, which must be at pos.
func writeRestoredSnapshot(layout Layout, name, path string, pos Pos) error {
	if pos.TXID == 0 {
		return errors.New("restorer returned no position")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdrb := make([]byte, sqliteHeaderSize)
	if _, err := io.ReadFull(f, hdrb); err != nil || !dbHeader(hdrb).valid() {
		return fmt.Errorf("restored file is not a database: %w", errors.Join(err, errors.New("bad header")))
	}
	pageSize := dbHeader(hdrb).pageSize()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	commit := uint32(fi.Size() / int64(pageSize))
	if err := os.MkdirAll(layout.LTXDir(name), 0o755); err != nil {
		return err
	}
	out, err := os.Create(layout.LTXPath(name, 1, pos.TXID))
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	enc, err := ltx.NewEncoder(w)
	if err != nil {
		return err
	}
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, PageSize: pageSize, Commit: commit,
		MinTXID: 1, MaxTXID: pos.TXID, Timestamp: time.Now().UnixMilli(),
	}); err != nil {
		return err
	}
	data := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		if _, err := f.ReadAt(data, int64(pgno-1)*int64(pageSize)); err != nil {
			return fmt.Errorf("read page %d: %w", pgno, err)
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			return err
		}
	}
	enc.SetPostApplyChecksum(pos.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return fmt.Errorf("restored database does not match its position %s: %w", pos, err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := layout.WriteBucketPos(name, pos); err != nil {
		return err
	}
	// The copy holds nothing but what it fetched.
	return os.WriteFile(filepath.Join(layout.MetaDir(name), appliedPosName), []byte(pos.String()+"\n"), 0o644)
}
