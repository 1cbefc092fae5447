package ltx_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

const benchPages = 1024 // 4 MiB of 4 KiB pages per operation

func benchData(compressible bool) []testPage {
	rng := rand.New(rand.NewPCG(1, 2))
	pages := make([]testPage, benchPages)
	for i := range pages {
		pages[i] = testPage{uint32(i + 1), makePage(rng, 4096, compressible)}
	}
	return pages
}

var benchKinds = []struct {
	name         string
	compressible bool
}{{"compressible", true}, {"random", false}}

func benchHeader() ltx.Header {
	return ltx.Header{Version: 3, PageSize: 4096, Commit: benchPages, MinTXID: 1, MaxTXID: 1}
}

// BenchmarkEncode measures encoding 4 KiB pages to memory.
func BenchmarkEncode(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			pages := benchData(k.compressible)
			b.SetBytes(benchPages * 4096)
			b.ReportAllocs()
			for b.Loop() {
				enc, _ := ltx.NewEncoder(io.Discard)
				if err := enc.EncodeHeader(benchHeader()); err != nil {
					b.Fatal(err)
				}
				for _, p := range pages {
					if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
						b.Fatal(err)
					}
				}
				if err := enc.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode measures decoding and fully verifying 4 KiB pages.
func BenchmarkDecode(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			file := encodeFile(b, benchHeader(), benchData(k.compressible), 0)
			b.SetBytes(benchPages * 4096)
			b.ReportAllocs()
			data := make([]byte, 4096)
			for b.Loop() {
				dec := ltx.NewDecoder(bytes.NewReader(file))
				if err := dec.DecodeHeader(); err != nil {
					b.Fatal(err)
				}
				var ph ltx.PageHeader
				for {
					if err := dec.DecodePage(&ph, data); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				if err := dec.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeToDisk encodes to a file on local disk; BenchmarkRawToDisk
// writes the same pages uncompressed, as the baseline to compare with.
func BenchmarkEncodeToDisk(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			pages := benchData(k.compressible)
			path := filepath.Join(b.TempDir(), "bench.ltx")
			b.SetBytes(benchPages * 4096)
			for b.Loop() {
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				enc, _ := ltx.NewEncoder(f)
				if err := enc.EncodeHeader(benchHeader()); err != nil {
					b.Fatal(err)
				}
				for _, p := range pages {
					if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
						b.Fatal(err)
					}
				}
				if err := enc.Close(); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawToDisk writes the pages to a file with no encoding.
func BenchmarkRawToDisk(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			pages := benchData(k.compressible)
			path := filepath.Join(b.TempDir(), "bench.raw")
			b.SetBytes(benchPages * 4096)
			for b.Loop() {
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range pages {
					if _, err := f.Write(p.data); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompact1000 merges 1,000 small files (1-4 pages each) into one.
func BenchmarkCompact1000(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	const commit = 2000
	var files [][]byte
	var total int64
	for txid := ltx.TXID(2); txid < 1002; txid++ {
		hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: commit, MinTXID: txid, MaxTXID: txid, PreApplyChecksum: ltx.ChecksumFlag | 1}
		var pages []testPage
		pgno := uint32(rng.IntN(commit-10)) + 1
		for i := rng.IntN(4); i >= 0; i-- {
			pages = append(pages, testPage{pgno, makePage(rng, 4096, true)})
			pgno += uint32(rng.IntN(3)) + 1
		}
		f := encodeFile(b, hdr, pages, ltx.ChecksumFlag|2)
		files = append(files, f)
		total += int64(len(f))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	rs := make([]io.Reader, len(files))
	for b.Loop() {
		for i, f := range files {
			rs[i] = bytes.NewReader(f)
		}
		if err := ltx.NewCompactor(io.Discard, rs...).Compact(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChecksumIndexSet measures the per-page cost of keeping the
// database checksum current.
func BenchmarkChecksumIndexSet(b *testing.B) {
	idx, _ := ltx.NewChecksumIndex(4096)
	pages := benchData(false)
	for _, p := range pages {
		_ = idx.Set(p.pgno, p.data)
	}
	b.SetBytes(4096)
	i := 0
	for b.Loop() {
		p := pages[i%len(pages)]
		if err := idx.Set(p.pgno, p.data); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkChecksumDatabase measures a full checksum scan from memory.
func BenchmarkChecksumDatabase(b *testing.B) {
	var db []byte
	for _, p := range benchData(false) {
		db = append(db, p.data...)
	}
	b.SetBytes(int64(len(db)))
	for b.Loop() {
		if _, err := ltx.ChecksumDatabase(bytes.NewReader(db), 4096, benchPages); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChecksumIndexSave measures saving after a commit that changed
// one page of a 1 GiB database (262,144 pages of 4 KiB), fsyncs included.
func BenchmarkChecksumIndexSave(b *testing.B) {
	const commit = 262144
	idx, _ := ltx.NewChecksumIndex(4096)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		_ = idx.SetChecksum(pgno, ltx.ChecksumFlag|ltx.Checksum(pgno))
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "idx"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := idx.Save(f, 1); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	i := 0
	for b.Loop() {
		page[0] = byte(i)
		_ = idx.Set(uint32(i%commit)+1, page)
		if err := idx.Save(f, ltx.TXID(i+2)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
