package ltx_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	sltx "github.com/superfly/ltx"
)

// interopCases are files exercising each header shape.
func interopCases(rng *rand.Rand) []struct {
	name  string
	hdr   ltx.Header
	pages []testPage
	post  ltx.Checksum
} {
	snap := snapshotPages(rng, 4096, 40)
	return []struct {
		name  string
		hdr   ltx.Header
		pages []testPage
		post  ltx.Checksum
	}{
		{"snapshot", ltx.Header{Version: 3, PageSize: 4096, Commit: 40, MinTXID: 1, MaxTXID: 1, Timestamp: 1700000000123, NodeID: 7}, snap, checksumPages(snap)},
		{"incremental", ltx.Header{Version: 3, PageSize: 512, Commit: 90, MinTXID: 5, MaxTXID: 9, Timestamp: 1700000000456, PreApplyChecksum: ltx.ChecksumFlag | 0x1234, WALOffset: 32, WALSize: 4096, WALSalt1: 11, WALSalt2: 12},
			[]testPage{{3, makePage(rng, 512, true)}, {17, makePage(rng, 512, false)}, {90, makePage(rng, 512, true)}}, ltx.ChecksumFlag | 0x5678},
		{"nochecksum", ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 65536, Commit: 3, MinTXID: 2, MaxTXID: 2},
			[]testPage{{2, makePage(rng, 65536, false)}}, 0},
		{"empty-db", ltx.Header{Version: 3, PageSize: 4096, Commit: 0, MinTXID: 3, MaxTXID: 3, PreApplyChecksum: ltx.ChecksumFlag | 1}, nil, ltx.ChecksumFlag},
	}
}

// TestInterop_FerryToSuperfly encodes with Ferry and decodes with
// superfly/ltx, and checks the bytes match superfly/ltx's own encoding.
func TestInterop_FerryToSuperfly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range interopCases(rng) {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeFile(t, tc.hdr, tc.pages, tc.post)

			dec := sltx.NewDecoder(bytes.NewReader(b))
			if err := dec.DecodeHeader(); err != nil {
				t.Fatalf("superfly decode header: %v", err)
			}
			sh := dec.Header()
			if sh.Flags != tc.hdr.Flags || sh.PageSize != tc.hdr.PageSize || sh.Commit != tc.hdr.Commit ||
				uint64(sh.MinTXID) != uint64(tc.hdr.MinTXID) || uint64(sh.MaxTXID) != uint64(tc.hdr.MaxTXID) ||
				sh.Timestamp != tc.hdr.Timestamp || uint64(sh.PreApplyChecksum) != uint64(tc.hdr.PreApplyChecksum) ||
				sh.WALOffset != tc.hdr.WALOffset || sh.WALSize != tc.hdr.WALSize || sh.WALSalt1 != tc.hdr.WALSalt1 ||
				sh.WALSalt2 != tc.hdr.WALSalt2 || sh.NodeID != tc.hdr.NodeID {
				t.Fatalf("header mismatch: superfly %+v, ferry %+v", sh, tc.hdr)
			}
			var got []testPage
			for {
				var ph sltx.PageHeader
				data := make([]byte, sh.PageSize)
				if err := dec.DecodePage(&ph, data); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("superfly decode page: %v", err)
				}
				got = append(got, testPage{ph.Pgno, data})
			}
			if err := dec.Close(); err != nil {
				t.Fatalf("superfly close: %v", err)
			}
			if !equalPages(got, tc.pages) {
				t.Fatal("pages differ")
			}

			_, _, tr, err := decodeFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ferry decode: %v", err)
			}
			if uint64(dec.Trailer().PostApplyChecksum) != uint64(tr.PostApplyChecksum) ||
				uint64(dec.Trailer().FileChecksum) != uint64(tr.FileChecksum) {
				t.Fatalf("trailer: superfly %+v, ferry %+v", dec.Trailer(), tr)
			}

			// superfly/ltx's encoder must produce the very same bytes.
			sb := superflyEncode(t, tc.hdr, tc.pages, tc.post)
			if !bytes.Equal(sb, b) {
				t.Fatalf("encodings differ: ferry %d bytes, superfly %d bytes", len(b), len(sb))
			}
		})
	}
}

// TestInterop_SuperflyToFerry encodes with superfly/ltx and decodes with Ferry.
func TestInterop_SuperflyToFerry(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range interopCases(rng) {
		t.Run(tc.name, func(t *testing.T) {
			b := superflyEncode(t, tc.hdr, tc.pages, tc.post)
			hdr, pages, tr, err := decodeFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ferry decode: %v", err)
			}
			want := tc.hdr
			want.Version = ltx.Version
			if hdr != want {
				t.Fatalf("header: got %+v, want %+v", hdr, want)
			}
			if !equalPages(pages, tc.pages) {
				t.Fatal("pages differ")
			}
			sdec := sltx.NewDecoder(bytes.NewReader(b))
			if err := sdec.Verify(); err != nil {
				t.Fatal(err)
			}
			if uint64(sdec.Trailer().FileChecksum) != uint64(tr.FileChecksum) || uint64(sdec.Trailer().PostApplyChecksum) != uint64(tr.PostApplyChecksum) {
				t.Fatalf("trailer: superfly %+v, ferry %+v", sdec.Trailer(), tr)
			}
		})
	}
}

// superflyEncode writes a file with superfly/ltx's encoder.
func superflyEncode(t testing.TB, hdr ltx.Header, pages []testPage, post ltx.Checksum) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := sltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(toSuperflyHeader(hdr)); err != nil {
		t.Fatalf("superfly encode header: %v", err)
	}
	for _, p := range pages {
		if err := enc.EncodePage(sltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
			t.Fatalf("superfly encode page: %v", err)
		}
	}
	enc.SetPostApplyChecksum(sltx.Checksum(post))
	if err := enc.Close(); err != nil {
		t.Fatalf("superfly close: %v", err)
	}
	return buf.Bytes()
}

// toSuperflyHeader converts a header field by field.
func toSuperflyHeader(h ltx.Header) sltx.Header {
	return sltx.Header{
		Version: sltx.Version, Flags: h.Flags, PageSize: h.PageSize, Commit: h.Commit,
		MinTXID: sltx.TXID(h.MinTXID), MaxTXID: sltx.TXID(h.MaxTXID), Timestamp: h.Timestamp,
		PreApplyChecksum: sltx.Checksum(h.PreApplyChecksum), WALOffset: h.WALOffset, WALSize: h.WALSize,
		WALSalt1: h.WALSalt1, WALSalt2: h.WALSalt2, NodeID: h.NodeID,
	}
}
