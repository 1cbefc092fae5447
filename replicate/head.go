package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// maxHeadSize bounds how much of a head object is read; a real one is a
// few hundred bytes.
const maxHeadSize = 64 << 10

// head is the content of a database's head object: the newest change set
// the bucket holds and the lease epoch of the writer that put it there.
//
// Uploads write the head before the L0 object it announces (see upload.go),
// so LastMin..TXID names an object that may still be in flight.
type head struct {
	TXID     ltx.TXID     `json:"txid"`
	Checksum ltx.Checksum `json:"checksum"`
	Epoch    uint64       `json:"epoch"`
	// LastMin is the first TXID of the L0 file ending at TXID.
	LastMin ltx.TXID `json:"lastMin"`
	// Node is the writer's node name, for operators reading the bucket.
	Node string `json:"node,omitempty"`
	// PageSize is the database's page size at TXID; zero in heads written
	// before it was recorded.
	PageSize uint32 `json:"pageSize,omitempty"`
	// PageSizeSince is the first TXID at PageSize when the page size
	// changed after TXID 1: LTX files of two page sizes cannot be merged,
	// so a restore past it, Litestream's and `ltx apply`'s included, must
	// start from a snapshot at or after it (see changeSnapshotTXID).
	PageSizeSince ltx.TXID `json:"pageSizeSince,omitempty"`
	// Mode is the permission bits of the writer's database file, which a
	// restore gives the file it writes; zero when unknown.
	Mode uint32 `json:"mode,omitempty"`
	// Time is when the writer committed TXID, in milliseconds since the
	// Unix epoch (the LTX header's timestamp), so that a replica can tell
	// how far behind it is in time; zero in heads written before it was
	// recorded.
	Time int64 `json:"time,omitempty"`
}

// defaultFileMode is the mode a restore gives a database whose head does
// not record one: what SQLite creates files with under the usual umask.
const defaultFileMode = 0o644

// fileMode returns the mode a restore gives the database h describes.
func (h head) fileMode() os.FileMode {
	if m := os.FileMode(h.Mode).Perm(); m != 0 {
		return m
	}
	return defaultFileMode
}

// readHead fetches database name's head. exists is false when there is
// none, which is the case for a database never uploaded, or one written
// only by Litestream.
func readHead(ctx context.Context, b Backend, key string) (h head, etag string, exists bool, err error) {
	rc, info, err := b.Get(ctx, key)
	if errors.Is(err, ErrObjectNotFound) {
		return head{}, "", false, nil
	} else if err != nil {
		return head{}, "", false, fmt.Errorf("read head: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxHeadSize+1))
	if err != nil {
		return head{}, "", false, fmt.Errorf("read head %s: %w", key, err)
	}
	if len(data) > maxHeadSize {
		return head{}, "", false, fmt.Errorf("read head %s: larger than %d bytes", key, maxHeadSize)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return head{}, "", false, fmt.Errorf("read head %s: %w", key, err)
	}
	if h.TXID != 0 && (h.LastMin == 0 || h.LastMin > h.TXID || h.Checksum&ltx.ChecksumFlag == 0) {
		return head{}, "", false, fmt.Errorf("read head %s: inconsistent content %s", key, data)
	}
	return h, info.ETag, true, nil
}

// writeHead stores h under key if the current head's ETag is still etag,
// or, with an empty etag, if there is no head yet. It returns the new ETag.
func writeHead(ctx context.Context, b Backend, key string, h head, etag string) (string, error) {
	data, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("write head: %w", err)
	}
	opts := PutOptions{IfMatch: etag, IfNoneMatch: etag == ""}
	newETag, err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return "", fmt.Errorf("write head: %w", err)
	}
	return newETag, nil
}
