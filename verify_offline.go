package ferry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// VerifyFiles checks that database name's local log is one unbroken
// chain, recomputes the database's checksum from its files under layout
// (the database file and the committed frames of its WAL) and compares it
// with the position at the end of its local log. It changes
// nothing, so it may run while the database is mounted; a transaction that
// commits during the check can make it report a difference, so callers
// retry once before concluding. It returns the log's position and the
// computed checksum.
func VerifyFiles(ctx context.Context, layout Layout, name string) (Pos, ltx.Checksum, error) {
	if err := ValidateName(name); err != nil {
		return Pos{}, 0, err
	}
	s := NewStore(layout, StoreOptions{Logger: slog.New(slog.DiscardHandler)})
	d := newDB(s, name)
	f, err := os.Open(layout.DBPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return Pos{}, 0, fmt.Errorf("%q: %w", name, ErrDatabaseNotFound)
	} else if err != nil {
		return Pos{}, 0, fmt.Errorf("open database: %w", err)
	}
	defer f.Close()
	d.file = f

	files, err := s.listLog(name)
	if err != nil {
		return Pos{}, 0, err
	}
	if len(files) == 0 {
		return Pos{}, 0, fmt.Errorf("%q has no local LTX log", name)
	}
	if err := checkChain(files); err != nil {
		return Pos{}, 0, fmt.Errorf("%q: %w", name, err)
	}
	_, trailer, err := verifyLTXFile(files[len(files)-1].Path)
	if err != nil {
		return Pos{}, 0, err
	}
	pos := Pos{TXID: files[len(files)-1].MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}

	hdr, err := d.readHeader()
	if err != nil || !hdr.valid() {
		return pos, 0, fmt.Errorf("read database header: %w", errors.Join(err, errors.New("not a SQLite database")))
	}
	if err := d.loadWAL(0); err != nil {
		return pos, 0, err
	}
	pageN, err := d.logicalPageCount(hdr)
	if err != nil {
		return pos, 0, err
	}
	pageSize := hdr.pageSize()
	var sum ltx.Checksum
	const batch = 1024
	for start := uint32(1); start <= pageN; start += batch {
		if err := ctx.Err(); err != nil {
			return pos, 0, err
		}
		pages, err := d.readLogicalPages(pageRange(start, min(start+batch-1, pageN)), pageSize)
		if err != nil {
			return pos, 0, err
		}
		for _, p := range pages {
			sum ^= ltx.ChecksumPage(p.pgno, p.data)
		}
	}
	got := ltx.ChecksumFlag | sum
	if got != pos.PostApplyChecksum {
		return pos, got, fmt.Errorf("%q: database checksum %s does not match position %s", name, got, pos)
	}
	return pos, got, nil
}
