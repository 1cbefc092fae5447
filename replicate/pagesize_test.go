package replicate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry"

	"github.com/ferrydb/ferry/ltx"
)

// writeLTX writes a one-page LTX file of the given page size and TXID.
func writeLTX(t *testing.T, dir string, pageSize uint32, txid ltx.TXID, pre ltx.Checksum) (localFile, ltx.Checksum) {
	t.Helper()
	page := bytes.Repeat([]byte{byte(txid)}, int(pageSize))
	post := ltx.ChecksumPage(1, page)
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: pageSize, Commit: 1, MinTXID: txid, MaxTXID: txid,
		Timestamp: 1, PreApplyChecksum: pre}); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ltx.FormatFilename(txid, txid))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return localFile{MinTXID: txid, MaxTXID: txid, Path: path, Size: int64(buf.Len())}, post
}

// TestUploadBatchStopsAtPageSizeChange checks that a batch never mixes
// page sizes, which cannot be merged into one LTX file: a VACUUM that
// changes the page size starts the next batch, and the batch before it
// still merges.
func TestUploadBatchStopsAtPageSizeChange(t *testing.T) {
	dir := t.TempDir()
	a, sa := writeLTX(t, dir, 1024, 1, 0)
	b, sb := writeLTX(t, dir, 1024, 2, sa)
	c, _ := writeLTX(t, dir, 512, 3, sb)
	got, err := samePageSize([]localFile{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].MaxTXID != 2 {
		t.Fatalf("batch = %v, want the two 1024-byte files", got)
	}
	spool, hdr, _, err := compactLocal(t.Context(), got)
	if err != nil {
		t.Fatal(err)
	}
	spool.Close()
	if hdr.MinTXID != 1 || hdr.MaxTXID != 2 || hdr.PageSize != 1024 {
		t.Fatalf("merged header %+v", hdr)
	}
	if got, err := samePageSize([]localFile{c}); err != nil || len(got) != 1 {
		t.Fatalf("single file: %v %v", got, err)
	}

	// A damaged header is an error, not a silent cut.
	if err := os.WriteFile(b.Path, []byte("not an LTX file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := samePageSize([]localFile{a, b}); err == nil {
		t.Fatal("samePageSize accepted a damaged file")
	}
}

// TestPageSizeChangeUploadsAndCompacts runs a local log whose page size
// changes through uploads and maintenance: everything reaches the bucket,
// without an error, and the change leaves a snapshot a restore starts
// from.
func TestPageSizeChangeUploadsAndCompacts(t *testing.T) {
	ctx := t.Context()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions()
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
	opts.SnapshotInterval = -1
	r, layout, _ := newFileReplicator(t, opts)
	dir := layout.LTXDir("p.db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var sum ltx.Checksum
	sizes := []uint32{1024, 1024, 512, 512}
	for i, size := range sizes {
		_, sum = writeLTX(t, dir, size, ltx.TXID(i+1), sum)
	}
	r.Committed("p.db", ferry.Pos{TXID: ltx.TXID(len(sizes)), PostApplyChecksum: sum})
	for i := 0; i < 6; i++ {
		r.tick(ctx)
		clock.Add(11 * time.Second)
	}
	if st := r.Stats(); st.LastError != "" {
		t.Fatalf("replication error: %s", st.LastError)
	}
	if pos, ok := r.BucketPos("p.db"); !ok || pos.TXID != ltx.TXID(len(sizes)) {
		t.Fatalf("bucket position %v %v, want TXID %d", pos, ok, len(sizes))
	}
	// The upload that changed the page size ended at 4 and left a
	// snapshot there; retention then dropped every file it covers.
	db := r.get("p.db")
	db.mu.Lock()
	snaps := append([]fileInfo(nil), db.files.levels[SnapshotLevel]...)
	db.mu.Unlock()
	if len(snaps) != 1 || snaps[0].MaxTXID != 4 {
		t.Fatalf("snapshots = %+v, want one at TXID 4", snaps)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, "p.db", out); err != nil || pos.TXID != 4 || pos.PostApplyChecksum != sum {
		t.Fatalf("restore: %v %v", pos, err)
	}
}
