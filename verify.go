package ferry

import (
	"context"
	"fmt"

	"github.com/ferrydb/ferry/ltx"
)

// Verify recomputes the checksum of database name from every page, as the
// application sees it, and compares it with the database's position and
// with the checksum index kept in memory. It returns an error describing
// the first difference.
func (s *Store) Verify(ctx context.Context, name string) error {
	d := s.DB(name)
	if d == nil {
		return fmt.Errorf("%q: %w", name, ErrDatabaseNotFound)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum ltx.Checksum
	const batch = 1024
	for start := uint32(1); start <= d.pageN; start += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		pages, err := d.readLogicalPages(pageRange(start, min(start+batch-1, d.pageN)), d.pageSize)
		if err != nil {
			return fmt.Errorf("verify %q: %w", name, err)
		}
		for _, p := range pages {
			c := ltx.ChecksumPage(p.pgno, p.data)
			if c != d.sums[p.pgno-1] {
				return fmt.Errorf("verify %q: page %d has checksum %s, the index says %s", name, p.pgno, c, d.sums[p.pgno-1])
			}
			sum ^= c
		}
	}
	if got := ltx.ChecksumFlag | sum; d.pos.TXID != 0 && got != d.pos.PostApplyChecksum {
		return fmt.Errorf("verify %q: database checksum %s, position says %s", name, got, d.pos.PostApplyChecksum)
	}
	return nil
}
