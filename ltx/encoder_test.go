package ltx_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

func TestEncoder_Invalid(t *testing.T) {
	page := make([]byte, 4096)
	inc := ltx.Header{Version: 3, PageSize: 4096, Commit: 300000, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}
	snap := ltx.Header{Version: 3, PageSize: 4096, Commit: 3, MinTXID: 1, MaxTXID: 1}
	tests := []struct {
		name  string
		hdr   ltx.Header
		pages []uint32
		want  error
	}{
		{"page zero", inc, []uint32{0}, ltx.ErrInvalidPageHeader},
		{"out of order", inc, []uint32{5, 4}, ltx.ErrPageOutOfOrder},
		{"duplicate", inc, []uint32{5, 5}, ltx.ErrPageOutOfOrder},
		{"beyond commit", inc, []uint32{300001}, ltx.ErrPageOutOfBounds},
		{"lock page", inc, []uint32{262145}, ltx.ErrLockPage},
		{"snapshot gap", snap, []uint32{1, 3}, ltx.ErrSnapshotIncomplete},
		{"snapshot start", snap, []uint32{2}, ltx.ErrSnapshotIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, _ := ltx.NewEncoder(&bytes.Buffer{})
			if err := enc.EncodeHeader(tt.hdr); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, pgno := range tt.pages {
				if err = enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncoder_SnapshotChecks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: 3, MinTXID: 1, MaxTXID: 1}
	pages := snapshotPages(rng, 4096, 3)

	encode := func(pages []testPage, post ltx.Checksum) error {
		enc, _ := ltx.NewEncoder(&bytes.Buffer{})
		if err := enc.EncodeHeader(hdr); err != nil {
			return err
		}
		for _, p := range pages {
			if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
				return err
			}
		}
		if post != 0 {
			enc.SetPostApplyChecksum(post)
		}
		return enc.Close()
	}
	if err := encode(pages[:2], 0); !errors.Is(err, ltx.ErrSnapshotIncomplete) {
		t.Fatalf("short snapshot: %v", err)
	}
	if err := encode(pages, ltx.ChecksumFlag|1); !errors.Is(err, ltx.ErrPostApplyMismatch) {
		t.Fatalf("wrong post-apply: %v", err)
	}
	if err := encode(pages, checksumPages(pages)); err != nil {
		t.Fatalf("right post-apply: %v", err)
	}
	// Without SetPostApplyChecksum the encoder fills it in.
	b := encodeFile(t, hdr, pages, 0)
	_, _, tr, err := decodeFile(bytes.NewReader(b))
	if err != nil || tr.PostApplyChecksum != checksumPages(pages) {
		t.Fatalf("post-apply %s, want %s (%v)", tr.PostApplyChecksum, checksumPages(pages), err)
	}
}

func TestEncoder_TrailerChecks(t *testing.T) {
	cases := []struct {
		name string
		hdr  ltx.Header
		post ltx.Checksum
		want error
	}{
		{"missing post-apply", ltx.Header{Version: 3, PageSize: 512, Commit: 2, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}, 0, ltx.ErrInvalidTrailer},
		{"empty db post-apply", ltx.Header{Version: 3, PageSize: 512, Commit: 0, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}, ltx.ChecksumFlag | 1, ltx.ErrInvalidTrailer},
		{"post-apply on no-checksum file", ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 2, MinTXID: 2, MaxTXID: 2}, ltx.ChecksumFlag | 1, ltx.ErrInvalidTrailer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc, _ := ltx.NewEncoder(&bytes.Buffer{})
			if err := enc.EncodeHeader(tc.hdr); err != nil {
				t.Fatal(err)
			}
			if tc.post != 0 {
				enc.SetPostApplyChecksum(tc.post)
			}
			if err := enc.Close(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEncoder_InvalidHeader(t *testing.T) {
	enc, _ := ltx.NewEncoder(&bytes.Buffer{})
	err := enc.EncodeHeader(ltx.Header{PageSize: 4096, Commit: 1, MinTXID: 2, MaxTXID: 1})
	if !errors.Is(err, ltx.ErrInvalidTXID) {
		t.Fatalf("got %v", err)
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errBoom
	}
	w.n -= len(p)
	return len(p), nil
}

func TestEncoder_WriteErrorIsSticky(t *testing.T) {
	enc, _ := ltx.NewEncoder(&failWriter{n: 150})
	hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: 10, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	data := makePage(rand.New(rand.NewPCG(1, 2)), 4096, false)
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, data); !errors.Is(err, errBoom) {
		t.Fatalf("got %v", err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 2}, data); !errors.Is(err, errBoom) {
		t.Fatalf("after failure: %v", err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag)
	if err := enc.Close(); !errors.Is(err, errBoom) {
		t.Fatalf("Close after failure: %v", err)
	}
}

func TestEncoder_Misuse(t *testing.T) {
	enc, _ := ltx.NewEncoder(&bytes.Buffer{})
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 512)); err == nil {
		t.Fatal("page before header accepted")
	}
	if err := enc.Close(); err == nil {
		t.Fatal("Close before header succeeded")
	}
	hdr := ltx.Header{Version: 3, PageSize: 512, Commit: 1, MinTXID: 1, MaxTXID: 1}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err == nil {
		t.Fatal("second header accepted")
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 100)); err == nil {
		t.Fatal("short page accepted")
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 512)); !errors.Is(err, ltx.ErrEncoderClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
