package ltx_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// validFile returns a small incremental file and its pages.
func validFile(t testing.TB) ([]byte, ltx.Header, []testPage) {
	rng := rand.New(rand.NewPCG(5, 6))
	hdr := ltx.Header{Version: 3, PageSize: 1024, Commit: 20, MinTXID: 4, MaxTXID: 6, Timestamp: 99, PreApplyChecksum: ltx.ChecksumFlag | 42}
	pages := []testPage{{2, makePage(rng, 1024, true)}, {7, makePage(rng, 1024, false)}, {20, makePage(rng, 1024, true)}}
	return encodeFile(t, hdr, pages, ltx.ChecksumFlag|43), hdr, pages
}

func TestDecoder_RoundTrip(t *testing.T) {
	b, hdr, pages := validFile(t)
	gotHdr, gotPages, tr, err := decodeFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	hdr.Version = ltx.Version
	if gotHdr != hdr {
		t.Fatalf("header %+v, want %+v", gotHdr, hdr)
	}
	if !equalPages(gotPages, pages) {
		t.Fatal("pages differ")
	}
	if tr.PostApplyChecksum != ltx.ChecksumFlag|43 || tr.FileChecksum&ltx.ChecksumFlag == 0 {
		t.Fatalf("trailer %+v", tr)
	}
}

func TestDecoder_LegacyFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: 3, MinTXID: 1, MaxTXID: 1}
	pages := snapshotPages(rng, 4096, 3)
	raw := []rawPage{{pgno: 1, legacy: true, data: pages[0].data}, {pgno: 2, data: pages[1].data}, {pgno: 3, legacy: true, data: pages[2].data}}
	b := buildRaw(t, hdr, raw, checksumPages(pages), nil)
	_, got, _, err := decodeFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !equalPages(got, pages) {
		t.Fatal("pages differ")
	}
	// Random access must read legacy frames too.
	pr, err := ltx.NewPageReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, p := range pages {
		if err := pr.ReadPage(p.pgno, buf); err != nil || !bytes.Equal(buf, p.data) {
			t.Fatalf("page %d: %v", p.pgno, err)
		}
	}
}

func TestDecoder_NoChecksumFlag(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	hdr := ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 4096, Commit: 5, MinTXID: 1, MaxTXID: 3}
	pages := snapshotPages(rng, 4096, 5)
	b := superflyEncode(t, hdr, pages, 0)
	gotHdr, got, tr, err := decodeFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !gotHdr.NoChecksum() || tr.PostApplyChecksum != 0 || !equalPages(got, pages) {
		t.Fatalf("header %+v trailer %+v", gotHdr, tr)
	}
}

// TestDecoder_Invalid checks that each defect is reported with its own error.
func TestDecoder_Invalid(t *testing.T) {
	good, hdr, pages := validFile(t)
	data := pages[0].data
	put32 := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	put64 := func(off int, v uint64) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint64(b[off:], v)
		return b
	}
	snap := ltx.Header{Version: 3, PageSize: 1024, Commit: 3, MinTXID: 1, MaxTXID: 1}
	lockHdr := ltx.Header{Version: 3, PageSize: 65536, Commit: 20000, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}
	post := ltx.ChecksumFlag | 1

	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ltx.ErrTruncated},
		{"magic", append([]byte("LTX2"), good[4:]...), ltx.ErrInvalidMagic},
		{"header flags", put32(4, 1), ltx.ErrInvalidHeaderFlags},
		{"page size not power of two", put32(8, 1000), ltx.ErrInvalidPageSize},
		{"page size too small", put32(8, 256), ltx.ErrInvalidPageSize},
		{"page size too big", put32(8, 131072), ltx.ErrInvalidPageSize},
		{"zero min txid", put64(16, 0), ltx.ErrInvalidTXID},
		{"txid order", put64(16, 9), ltx.ErrInvalidTXID},
		{"missing pre-apply checksum", put64(40, 0), ltx.ErrInvalidHeader},
		{"pre-apply without flag", put64(40, 5), ltx.ErrInvalidHeader},
		{"snapshot with pre-apply", put64(16, 1), ltx.ErrInvalidHeader},
		{"page header flags", put32(ltx.HeaderSize+2, 0x0102), ltx.ErrInvalidPageHeader},
		{"page beyond commit", put32(12, 10), ltx.ErrPageOutOfBounds},
		{"file checksum", put64(32, 100), ltx.ErrChecksumMismatch},
		{"trailer file checksum", put64(len(good)-8, uint64(ltx.ChecksumFlag|7)), ltx.ErrChecksumMismatch},
		{"trailer without flag", put64(len(good)-8, 7), ltx.ErrInvalidTrailer},
		{"post-apply without flag", put64(len(good)-16, 7), ltx.ErrInvalidTrailer},
		{"trailing data", append(bytes.Clone(good), 0), ltx.ErrTrailingData},
		{"pages out of order", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}, {pgno: 3, data: data}}, post, nil), ltx.ErrPageOutOfOrder},
		{"duplicate page", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}, {pgno: 5, data: data}}, post, nil), ltx.ErrPageOutOfOrder},
		{"lock page", buildRaw(t, lockHdr, []rawPage{{pgno: 16385, data: make([]byte, 65536)}}, post, nil), ltx.ErrLockPage},
		{"snapshot gap", buildRaw(t, snap, []rawPage{{pgno: 1, data: data}, {pgno: 3, data: data}}, post, nil), ltx.ErrSnapshotIncomplete},
		{"snapshot short", buildRaw(t, snap, []rawPage{{pgno: 1, data: data}, {pgno: 2, data: data}}, post, nil), ltx.ErrSnapshotIncomplete},
		{"snapshot not from page 1", buildRaw(t, snap, []rawPage{{pgno: 2, data: data}}, post, nil), ltx.ErrSnapshotIncomplete},
		{"snapshot post-apply", buildRaw(t, snap, []rawPage{{pgno: 1, data: data}, {pgno: 2, data: data}, {pgno: 3, data: data}}, post, nil), ltx.ErrPostApplyMismatch},
		{"corrupt block", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data, badBlock: []byte{0xff, 1, 2, 3}}}, post, nil), ltx.ErrCorruptPage},
		{"short block", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data, badBlock: []byte{0x40, 'a', 'b', 'c', 'd'}}}, post, nil), ltx.ErrCorruptPage},
		{"empty block", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data, badBlock: []byte{}}}, post, nil), ltx.ErrCorruptPage},
		{"index missing entry", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}, {pgno: 6, data: data}}, post, func(e []rawIndexEntry) []rawIndexEntry { return e[:1] }), ltx.ErrIndexMismatch},
		{"index extra entry", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}}, post, func(e []rawIndexEntry) []rawIndexEntry { return append(e, rawIndexEntry{9, 500, 20}) }), ltx.ErrIndexMismatch},
		{"index wrong offset", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}}, post, func(e []rawIndexEntry) []rawIndexEntry { e[0].offset++; return e }), ltx.ErrIndexMismatch},
		{"index wrong pgno", buildRaw(t, hdr, []rawPage{{pgno: 5, data: data}}, post, func(e []rawIndexEntry) []rawIndexEntry { e[0].pgno = 6; return e }), ltx.ErrIndexMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := decodeFile(bytes.NewReader(tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !errors.Is(err, ltx.ErrInvalidFile) {
				t.Fatalf("%v does not match ErrInvalidFile", err)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

// TestDecoder_Truncated cuts a valid file at every length.
func TestDecoder_Truncated(t *testing.T) {
	good, _, _ := validFile(t)
	for n := 0; n < len(good); n++ {
		_, _, _, err := decodeFile(bytes.NewReader(good[:n]))
		if !errors.Is(err, ltx.ErrTruncated) {
			t.Fatalf("cut at %d of %d: got %v, want ErrTruncated", n, len(good), err)
		}
	}
}

// TestDecoder_BitFlips flips every bit of a valid file: each must be caught.
func TestDecoder_BitFlips(t *testing.T) {
	good, _, _ := validFile(t)
	for i := 0; i < len(good)*8; i++ {
		b := bytes.Clone(good)
		b[i/8] ^= 1 << (i % 8)
		if _, _, _, err := decodeFile(bytes.NewReader(b)); err == nil {
			// Bytes 80..99 of the header are reserved and not read, yet
			// they are covered by the file checksum.
			t.Fatalf("flip of bit %d in byte %d went unnoticed", i%8, i/8)
		}
	}
}

func TestDecoder_Misuse(t *testing.T) {
	good, _, _ := validFile(t)
	dec := ltx.NewDecoder(bytes.NewReader(good))
	if err := dec.Close(); err == nil {
		t.Fatal("Close before DecodeHeader succeeded")
	}
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	if err := dec.DecodePage(&ltx.PageHeader{}, make([]byte, 10)); err == nil {
		t.Fatal("short buffer accepted")
	}
	if err := dec.Close(); err == nil {
		t.Fatal("Close before the last page succeeded")
	}
	if err := dec.DecodeHeader(); err == nil {
		t.Fatal("second DecodeHeader succeeded")
	}
	buf := make([]byte, 1024)
	var ph ltx.PageHeader
	for dec.DecodePage(&ph, buf) == nil {
	}
	if err := dec.DecodePage(&ph, buf); err != io.EOF {
		t.Fatalf("after last page: %v, want io.EOF", err)
	}
	if dec.PageN() != 3 {
		t.Fatalf("PageN = %d", dec.PageN())
	}
	if err := dec.Close(); err != nil {
		t.Fatal(err)
	}
	if dec.N() != int64(len(good)) {
		t.Fatalf("N = %d, want %d", dec.N(), len(good))
	}
	if err := dec.DecodePage(&ph, buf); !errors.Is(err, ltx.ErrDecoderClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// errReader fails after n bytes.
type errReader struct {
	r io.Reader
	n int
}

var errBoom = errors.New("boom")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errBoom
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	n, err := r.r.Read(p)
	r.n -= n
	return n, err
}

func TestDecoder_ReadError(t *testing.T) {
	good, _, _ := validFile(t)
	for _, n := range []int{0, 50, 120, len(good) - 20, len(good) - 1} {
		_, _, _, err := decodeFile(&errReader{r: bytes.NewReader(good), n: n})
		if !errors.Is(err, errBoom) {
			t.Fatalf("fail at %d: got %v", n, err)
		}
	}
}
