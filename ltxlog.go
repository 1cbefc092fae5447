package ferry

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// listLog returns the database's LTX files ordered by TXID, removing
// temporary files left by a crash while one was written.
func (s *Store) listLog(name string) ([]LogFile, error) {
	dir := s.layout.LTXDir(name)
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".ltx.tmp") {
				// Never complete.
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return s.layout.ListLog(name)
}

// writePosFile records pos in the database's position file. The log is the
// authority after a crash, so the file is written in place without a sync.
func (d *DB) writePosFile(pos Pos) error {
	if d.posFile == nil {
		if err := os.MkdirAll(d.store.layout.MetaDir(d.name), 0o755); err != nil {
			return fmt.Errorf("create metadata directory: %w", err)
		}
		f, err := os.OpenFile(d.store.layout.PosPath(d.name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("open position file: %w", err)
		}
		d.posFile = f
	}
	b := []byte(pos.String() + "\n")
	if _, err := d.posFile.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write position file: %w", err)
	}
	return nil
}

// loadLog sets the position from the newest intact LTX file. Files newer
// than the recorded position may not have reached the disk before a crash:
// each is verified, and the first damaged one and all after it are removed.
func (d *DB) loadLog() error {
	files, err := d.store.listLog(d.name)
	if err != nil {
		return err
	}
	recorded, err := readPosFile(d.store.layout.PosPath(d.name))
	if err != nil {
		d.logger.Warn("ignoring unreadable position file", "err", err)
	}

	d.pos, d.lastHdr = Pos{}, ltx.Header{}
	for i, f := range files {
		if f.MaxTXID <= recorded.TXID && i < len(files)-1 {
			// Durable before the last sync: trust it, but keep the chain.
			if d.pos.TXID != 0 && f.MinTXID != d.pos.TXID+1 {
				// The replicator refills such a gap from the bucket when
				// it can; the position is the newest file's all the same.
				d.logger.Warn("local LTX log is missing a file", "txids", fmt.Sprintf("%s-%s", d.pos.TXID+1, f.MinTXID-1))
			}
			d.pos.TXID = f.MaxTXID
			continue
		}
		hdr, trailer, err := verifyLTXFile(f.Path)
		if err == nil && f.MinTXID != d.pos.TXID+1 && d.pos.TXID != 0 {
			err = fmt.Errorf("gap in log before %s", f.Path)
		}
		if err != nil {
			d.logger.Warn("removing damaged or out-of-order LTX files", "from", f.Path, "err", err)
			for _, g := range files[i:] {
				if err := os.Remove(g.Path); err != nil {
					return fmt.Errorf("remove damaged LTX file: %w", err)
				}
			}
			break
		}
		d.pos = Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
		d.lastHdr = hdr
	}
	if d.pos.TXID != 0 && d.pos.PostApplyChecksum == 0 {
		// Only durable files remained after the damaged ones were removed;
		// read the newest for its checksum.
		last := files[0]
		for _, f := range files {
			if f.MaxTXID == d.pos.TXID {
				last = f
			}
		}
		hdr, trailer, err := verifyLTXFile(last.Path)
		if err != nil {
			return fmt.Errorf("read newest LTX file: %w", err)
		}
		d.pos.PostApplyChecksum, d.lastHdr = trailer.PostApplyChecksum, hdr
	}
	if err := d.replayPending(); err != nil {
		return err
	}
	if d.pos != recorded {
		if err := d.writePosFile(d.pos); err != nil {
			return err
		}
	}
	return nil
}

// replayPending writes the change sets of the pending log that the LTX log
// does not have yet as LTX files, byte for byte as they were captured, and
// empties the pending log. A record cut off by a crash ends the replay: it
// was never acknowledged to the application.
func (d *DB) replayPending() error {
	path := d.store.layout.PendingPath(d.name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read pending log: %w", err)
	}
	for len(b) >= 8 {
		n := binary.BigEndian.Uint64(b[:8])
		if n > uint64(len(b)-8) {
			break
		}
		rec := b[8 : 8+n]
		b = b[8+n:]
		dec := ltx.NewDecoder(bytes.NewReader(rec))
		if err := dec.Verify(); err != nil {
			d.logger.Warn("damaged record in pending log", "err", err)
			break
		}
		hdr := dec.Header()
		if hdr.MaxTXID <= d.pos.TXID {
			continue // already in the LTX log
		}
		if hdr.MinTXID != d.pos.TXID+1 || (d.pos.TXID != 0 && hdr.PreApplyChecksum != d.pos.PostApplyChecksum) {
			d.logger.Warn("pending log does not continue the LTX log", "pos", d.pos, "min", hdr.MinTXID)
			break
		}
		f, err := d.createLTX(hdr.MinTXID, hdr.MaxTXID, ".tmp")
		if err != nil {
			return err
		}
		_, err = f.Write(rec)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), d.store.layout.LTXPath(d.name, hdr.MinTXID, hdr.MaxTXID))
		}
		if err != nil {
			_ = os.Remove(f.Name())
			return fmt.Errorf("write LTX file from pending log: %w", err)
		}
		d.pos = Pos{TXID: hdr.MaxTXID, PostApplyChecksum: dec.Trailer().PostApplyChecksum}
		d.lastHdr = hdr
		d.logger.Info("recovered change set from pending log", "txid", hdr.MaxTXID)
	}
	if err := os.Truncate(path, 0); err != nil {
		return fmt.Errorf("empty pending log: %w", err)
	}
	return nil
}

// verifyLTXFile decodes a whole LTX file and returns its header and
// trailer.
func verifyLTXFile(path string) (ltx.Header, ltx.Trailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return ltx.Header{}, ltx.Trailer{}, err
	}
	defer f.Close()
	dec := ltx.NewDecoder(bufio.NewReaderSize(f, 64<<10))
	if err := dec.Verify(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("verify %s: %w", path, err)
	}
	return dec.Header(), dec.Trailer(), nil
}

// enforceRetention removes LTX files older than the retention window. The
// newest file always stays, and with KeepUntilUploaded so does every file
// the bucket does not hold yet.
func (d *DB) enforceRetention(now time.Time) error {
	files, err := d.store.listLog(d.name)
	if err != nil || len(files) < 2 {
		return err
	}
	keepAbove := ltx.TXID(1<<64 - 1)
	if d.store.opts.KeepUntilUploaded {
		bpos, err := d.store.layout.ReadBucketPos(d.name)
		if err != nil {
			return err
		}
		keepAbove = bpos.TXID
	}
	cutoff := now.Add(-d.store.opts.Retention)
	for _, f := range files[:len(files)-1] {
		if !f.ModTime.Before(cutoff) || f.MaxTXID > keepAbove {
			break
		}
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove expired LTX file: %w", err)
		}
	}
	return nil
}

// checkChain reports the first break in a log's chain: a file that does
// not start one TXID after the previous one ends, or whose pre-apply
// checksum is not the previous file's post-apply checksum. It reads only
// each file's header and trailer.
func checkChain(files []LogFile) error {
	var prev ltx.Trailer
	for i, f := range files {
		hdr, trailer, err := ltx.ReadFileEnds(f.Path)
		if err != nil {
			return err
		}
		if i > 0 {
			if f.MinTXID != files[i-1].MaxTXID+1 {
				return fmt.Errorf("local LTX log is missing TXIDs %s-%s", files[i-1].MaxTXID+1, f.MinTXID-1)
			}
			if !hdr.NoChecksum() && hdr.PreApplyChecksum != prev.PostApplyChecksum {
				return fmt.Errorf("local LTX file %s starts from checksum %s, the file before it ends at %s", LTXFilename(f.MinTXID, f.MaxTXID), hdr.PreApplyChecksum, prev.PostApplyChecksum)
			}
		}
		prev = trailer
	}
	return nil
}
