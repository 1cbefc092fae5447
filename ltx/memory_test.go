package ltx_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestStreaming_MemoryDoesNotScaleWithData checks that decoding and
// compacting 16 MiB of pages allocates a small fraction of that: one page
// at a time plus the page index, never the file.
func TestStreaming_MemoryDoesNotScaleWithData(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	const pages = 4000
	var files [][]byte
	for txid := ltx.TXID(2); txid <= 3; txid++ {
		hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: pages, MinTXID: txid, MaxTXID: txid, PreApplyChecksum: ltx.ChecksumFlag | 1}
		var ps []testPage
		for pgno := uint32(1); pgno <= pages; pgno++ {
			ps = append(ps, testPage{pgno, makePage(rng, 4096, false)})
		}
		files = append(files, encodeFile(t, hdr, ps, ltx.ChecksumFlag|2))
	}
	const limit = 2 << 20 // 16 MiB of page data per file must cost under 2 MiB

	n := allocated(func() {
		dec := ltx.NewDecoder(bytes.NewReader(files[0]))
		if err := dec.Verify(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("decode: %d bytes", n)
	if n > limit {
		t.Fatalf("decoding 16 MiB allocated %d bytes", n)
	}

	n = allocated(func() {
		if err := ltx.NewCompactor(io.Discard, bytes.NewReader(files[0]), bytes.NewReader(files[1])).Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("compact: %d bytes", n)
	if n > limit {
		t.Fatalf("compacting 2 x 16 MiB allocated %d bytes", n)
	}

	n = allocated(func() {
		enc, _ := ltx.NewEncoder(io.Discard)
		hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: pages, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag | 1}
		if err := enc.EncodeHeader(hdr); err != nil {
			t.Fatal(err)
		}
		page := make([]byte, 4096)
		for pgno := uint32(1); pgno <= pages; pgno++ {
			page[0] = byte(pgno)
			if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
				t.Fatal(err)
			}
		}
		enc.SetPostApplyChecksum(ltx.ChecksumFlag | 2)
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("encode: %d bytes", n)
	if n > limit {
		t.Fatalf("encoding 16 MiB allocated %d bytes", n)
	}
}
