package ltx_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// FuzzDecoder feeds arbitrary bytes to the streaming decoder and the page
// reader. Neither may panic, and a file the decoder accepts must survive a
// re-encode with identical content and checksums.
func FuzzDecoder(f *testing.F) {
	// Seeds are kept small (compressible 512-byte pages) so that the
	// fuzzer's input minimization stays quick.
	rng := rand.New(rand.NewPCG(99, 100))
	pg := func() []byte { return makePage(rng, 512, true) }
	snap := []testPage{{1, pg()}, {2, pg()}}
	f.Add(encodeFile(f, ltx.Header{Version: 3, PageSize: 512, Commit: 2, MinTXID: 1, MaxTXID: 1}, snap, 0))
	f.Add(encodeFile(f, ltx.Header{Version: 3, PageSize: 512, Commit: 7, MinTXID: 3, MaxTXID: 4, PreApplyChecksum: ltx.ChecksumFlag | 1}, []testPage{{5, pg()}}, ltx.ChecksumFlag|2))
	f.Add(encodeFile(f, ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 2, MinTXID: 3, MaxTXID: 4}, []testPage{{2, pg()}}, 0))
	f.Add(buildRaw(f, ltx.Header{Version: 3, PageSize: 512, Commit: 2, MinTXID: 1, MaxTXID: 1},
		[]rawPage{{pgno: 1, legacy: true, data: snap[0].data}, {pgno: 2, data: snap[1].data}}, checksumPages(snap), nil))

	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, pages, tr, err := decodeFile(bytes.NewReader(b))
		if pr, err := ltx.NewPageReader(bytes.NewReader(b), int64(len(b))); err == nil && pr.Header().PageSize <= 65536 {
			buf := make([]byte, pr.Header().PageSize)
			for _, pgno := range pr.Pgnos() {
				_ = pr.ReadPage(pgno, buf)
			}
			_ = pr.Verify()
		}
		if err != nil {
			return
		}

		// Re-encoding what was decoded must give the same logical file.
		var out bytes.Buffer
		enc, _ := ltx.NewEncoder(&out)
		if err := enc.EncodeHeader(hdr); err != nil {
			t.Fatalf("re-encode header: %v", err)
		}
		for _, p := range pages {
			if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
				t.Fatalf("re-encode page %d: %v", p.pgno, err)
			}
		}
		enc.SetPostApplyChecksum(tr.PostApplyChecksum)
		if err := enc.Close(); err != nil {
			t.Fatalf("re-encode close: %v", err)
		}
		hdr2, pages2, tr2, err := decodeFile(&out)
		if err != nil {
			t.Fatalf("decode re-encoded file: %v", err)
		}
		if hdr2 != hdr || tr2.PostApplyChecksum != tr.PostApplyChecksum || !equalPages(pages, pages2) {
			t.Fatal("re-encoded file differs")
		}
	})
}
