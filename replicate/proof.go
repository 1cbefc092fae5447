package replicate

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ferrydb/ferry/ltx"
)

// checksumAt returns the bucket's checksum after TXID txid, read from an
// object that proves it: one starting right after txid (its pre-apply
// checksum) or one ending at it (its post-apply checksum). ok is false
// when the listing holds neither, or only files without checksums.
//
// Catch-up needs it when the file it would apply next starts at or before
// the local position: that file carries no checksum for the local TXID,
// and applying it on a copy whose last commits differ from the bucket's
// would hide them under pages that happen to match.
func (bk *Bucket) checksumAt(ctx context.Context, files *dbFiles, txid ltx.TXID) (sum ltx.Checksum, ok bool, err error) {
	if files.hasHead && files.head.TXID == txid {
		return files.head.Checksum, true, nil
	}
	var after, at *fileInfo
	for l := range files.levels {
		for i := range files.levels[l] {
			fi := &files.levels[l][i]
			if files.hasHead && fi.MaxTXID > files.head.TXID {
				continue // never announced: not part of the history
			}
			if fi.MinTXID == txid+1 && txid > 0 && (after == nil || fi.Size < after.Size) {
				after = fi
			}
			if fi.MaxTXID == txid && (at == nil || fi.Size < at.Size) {
				at = fi
			}
		}
	}
	if after != nil {
		data, err := bk.download(ctx, *after)
		if err != nil {
			return 0, false, fmt.Errorf("read checksum at TXID %s: %w", txid, err)
		}
		hdr, _, err := ltx.PeekHeader(bytes.NewReader(data))
		if err != nil {
			return 0, false, fmt.Errorf("read checksum at TXID %s: object %s: %w", txid, after.Key, err)
		}
		if !hdr.NoChecksum() {
			return hdr.PreApplyChecksum, true, nil
		}
	}
	if at != nil {
		data, err := bk.download(ctx, *at)
		if err != nil {
			return 0, false, fmt.Errorf("read checksum at TXID %s: %w", txid, err)
		}
		dec := ltx.NewDecoder(bytes.NewReader(data))
		if err := dec.Verify(); err != nil {
			return 0, false, fmt.Errorf("read checksum at TXID %s: object %s: %w", txid, at.Key, err)
		}
		if hdr := dec.Header(); !hdr.NoChecksum() {
			return dec.Trailer().PostApplyChecksum, true, nil
		}
	}
	return 0, false, nil
}
