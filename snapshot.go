package ferry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// WriteSnapshot writes database name as it stands now as one LTX snapshot
// (TXIDs 1 through its position, every page) to w and returns the
// position. It is what a holder sends a replica whose position its log
// cannot continue. The pages are read while the database's state is
// locked, so the snapshot is one committed state; the encoder checks the
// pages against the position's checksum, and a snapshot taken while a
// rollback-journal transaction is half written fails that check instead of
// going out: the caller tries again later.
func (s *Store) WriteSnapshot(ctx context.Context, name string, w io.Writer) (Pos, error) {
	d := s.DB(name)
	if d == nil {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, ErrDatabaseNotFound)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUpWALLocked(); err != nil {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	// Write out captured change sets, so that the log ends where the
	// snapshot does and the stream continues from it with whole files.
	if err := d.flushLocked(); err != nil {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	if d.state != stateDatabase || d.pos.TXID == 0 || d.pageSize == 0 {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, ErrDatabaseNotFound)
	}
	pos, pageSize, commit := d.pos, d.pageSize, d.pageN
	bw := bufio.NewWriterSize(w, 64<<10)
	enc, err := ltx.NewEncoder(bw)
	if err != nil {
		return Pos{}, err
	}
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, PageSize: pageSize, Commit: commit,
		MinTXID: 1, MaxTXID: pos.TXID, Timestamp: time.Now().UnixMilli(),
	}); err != nil {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	// Read in batches so that memory stays bounded whatever the size.
	const batch = 256
	pgnos := make([]uint32, 0, batch)
	for pgno := uint32(1); pgno <= commit; {
		if err := ctx.Err(); err != nil {
			return Pos{}, err
		}
		pgnos = pgnos[:0]
		for ; pgno <= commit && len(pgnos) < batch; pgno++ {
			pgnos = append(pgnos, pgno)
		}
		pages, err := d.readLogicalPages(pgnos, pageSize)
		if err != nil {
			return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
		}
		for _, p := range pages {
			if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
				return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
			}
		}
	}
	enc.SetPostApplyChecksum(pos.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return Pos{}, fmt.Errorf("snapshot %q does not match its position %s: %w", name, pos, err)
	}
	if err := bw.Flush(); err != nil {
		return Pos{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	return pos, nil
}

// QueuedChangeSets returns, encoded as LTX files, the change sets of
// database name after TXID after that are captured but not yet in the
// local log (the flusher writes them within about 10 ms). A holder streams
// them at once instead of waiting for the log. A change set here may not
// be durable yet (WAL mode with synchronous=NORMAL); if the holder then
// loses it in a power failure, a reader that took it holds TXIDs the
// holder never had, and is resnapshotted at its next handshake.
func (s *Store) QueuedChangeSets(name string, after ltx.TXID) ([][]byte, error) {
	d := s.DB(name)
	if d == nil {
		return nil, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [][]byte
	next := after + 1
	for _, q := range append(d.recent[:len(d.recent):len(d.recent)], d.queue...) {
		if q.hdr.MaxTXID < next {
			continue
		}
		if q.hdr.MinTXID != next {
			break
		}
		var b bytes.Buffer
		if err := encodeLTX(&b, q.hdr, q.pages, q.post); err != nil {
			return nil, fmt.Errorf("encode queued change set of %q: %w", name, err)
		}
		out = append(out, b.Bytes())
		next = q.hdr.MaxTXID + 1
	}
	return out, nil
}
