package ltx_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

func TestPageReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: 1000, MinTXID: 3, MaxTXID: 3, PreApplyChecksum: ltx.ChecksumFlag | 1}
	var pages []testPage
	for pgno := uint32(1); pgno <= 1000; pgno += uint32(rng.IntN(20)) + 1 {
		pages = append(pages, testPage{pgno, makePage(rng, 4096, pgno%2 == 0)})
	}
	b := encodeFile(t, hdr, pages, ltx.ChecksumFlag|2)
	pr, err := ltx.NewPageReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if pr.PageN() != len(pages) || pr.Header().Commit != 1000 || pr.Trailer().PostApplyChecksum != ltx.ChecksumFlag|2 {
		t.Fatalf("PageN %d header %+v", pr.PageN(), pr.Header())
	}
	buf := make([]byte, 4096)
	for _, i := range rng.Perm(len(pages)) {
		p := pages[i]
		if !pr.Has(p.pgno) {
			t.Fatalf("Has(%d) false", p.pgno)
		}
		if err := pr.ReadPage(p.pgno, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, p.data) {
			t.Fatalf("page %d differs", p.pgno)
		}
	}
	if got := pr.Pgnos(); len(got) != len(pages) || got[0] != pages[0].pgno {
		t.Fatal("Pgnos")
	}
	missing := pages[0].pgno + 1
	if pr.Has(missing) {
		t.Fatal("Has(missing)")
	}
	if err := pr.ReadPage(missing, buf); !errors.Is(err, ltx.ErrPageNotFound) {
		t.Fatalf("missing page: %v", err)
	}
	if err := pr.ReadPage(pages[0].pgno, buf[:10]); err == nil {
		t.Fatal("short buffer accepted")
	}
	if err := pr.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestPageReader_Invalid(t *testing.T) {
	good, _, pages := validFile(t)
	pr, err := ltx.NewPageReader(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	_ = pr
	idxSizeOff := len(good) - ltx.TrailerSize - 8
	idxSize := int(binary.BigEndian.Uint64(good[idxSizeOff:]))
	idxStart := idxSizeOff - idxSize

	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"tiny", good[:40], ltx.ErrTruncated},
		{"magic", mut(func(b []byte) { b[0] = 'X' }), ltx.ErrInvalidMagic},
		{"index size huge", mut(func(b []byte) { binary.BigEndian.PutUint64(b[idxSizeOff:], 1<<40) }), ltx.ErrIndexMismatch},
		{"index size zero", mut(func(b []byte) { binary.BigEndian.PutUint64(b[idxSizeOff:], 0) }), ltx.ErrIndexMismatch},
		{"no end marker", mut(func(b []byte) { b[idxStart-1] = 1 }), ltx.ErrIndexMismatch},
		{"trailer flag", mut(func(b []byte) { b[len(b)-8] = 0 }), ltx.ErrInvalidTrailer},
		{"page beyond commit", mut(func(b []byte) { b[idxStart] = 99 }), ltx.ErrPageOutOfBounds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ltx.NewPageReader(bytes.NewReader(tc.b), int64(len(tc.b)))
			if !errors.Is(err, tc.want) || !errors.Is(err, ltx.ErrInvalidFile) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	// Damage inside a frame shows up when that page is read.
	b := mut(func(b []byte) { b[ltx.HeaderSize+ltx.PageHeaderSize+4] ^= 0xff })
	pr, err = ltx.NewPageReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.ReadPage(pages[0].pgno, make([]byte, 1024)); err == nil {
		if err := pr.Verify(); !errors.Is(err, ltx.ErrInvalidFile) {
			t.Fatalf("damaged frame passed Verify: %v", err)
		}
	}
	b = mut(func(b []byte) { binary.BigEndian.PutUint32(b[ltx.HeaderSize:], 3) })
	pr, _ = ltx.NewPageReader(bytes.NewReader(b), int64(len(b)))
	if err := pr.ReadPage(pages[0].pgno, make([]byte, 1024)); !errors.Is(err, ltx.ErrIndexMismatch) {
		t.Fatalf("wrong frame pgno: %v", err)
	}
}

// TestPageReader_NeverPanics opens every truncation and many bit flips.
func TestPageReader_NeverPanics(t *testing.T) {
	good, _, _ := validFile(t)
	buf := make([]byte, 1024)
	try := func(b []byte) {
		pr, err := ltx.NewPageReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, pgno := range pr.Pgnos() {
			_ = pr.ReadPage(pgno, buf)
		}
	}
	for n := 0; n <= len(good); n++ {
		try(good[:n])
	}
	for i := 0; i < len(good)*8; i += 3 {
		b := bytes.Clone(good)
		b[i/8] ^= 1 << (i % 8)
		try(b)
	}
}
