package ltx_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// testPage is one page of a test file.
type testPage struct {
	pgno uint32
	data []byte
}

// makePage returns a page of pageSize bytes. Compressible pages repeat a
// short pattern; others are random.
func makePage(rng *rand.Rand, pageSize uint32, compressible bool) []byte {
	b := make([]byte, pageSize)
	if compressible {
		pat := []byte("ferry-page-")
		pat = append(pat, byte(rng.IntN(256)))
		for i := range b {
			b[i] = pat[i%len(pat)]
		}
		// Break up the pattern a little, like real b-tree pages.
		for i := 0; i < 16; i++ {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		return b
	}
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

// snapshotPages returns pages 1..commit (without the lock page).
func snapshotPages(rng *rand.Rand, pageSize, commit uint32) []testPage {
	var pages []testPage
	lock := ltx.LockPgno(pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		pages = append(pages, testPage{pgno, makePage(rng, pageSize, pgno%2 == 0)})
	}
	return pages
}

// encodeFile writes an LTX file with Ferry's encoder and returns its bytes.
func encodeFile(t testing.TB, hdr ltx.Header, pages []testPage, post ltx.Checksum) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatalf("encode header: %v", err)
	}
	for _, p := range pages {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
			t.Fatalf("encode page %d: %v", p.pgno, err)
		}
	}
	if post != 0 || hdr.NoChecksum() {
		enc.SetPostApplyChecksum(post)
	}
	if err := enc.Close(); err != nil {
		t.Fatalf("close encoder: %v", err)
	}
	if int64(buf.Len()) != enc.N() {
		t.Fatalf("N() = %d, wrote %d bytes", enc.N(), buf.Len())
	}
	return buf.Bytes()
}

// decodeFile reads an LTX file with Ferry's decoder.
func decodeFile(r io.Reader) (ltx.Header, []testPage, ltx.Trailer, error) {
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, nil, ltx.Trailer{}, err
	}
	hdr := dec.Header()
	var pages []testPage
	for {
		var ph ltx.PageHeader
		data := make([]byte, hdr.PageSize)
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return hdr, pages, ltx.Trailer{}, err
		}
		pages = append(pages, testPage{ph.Pgno, data})
	}
	if err := dec.Close(); err != nil {
		return hdr, pages, ltx.Trailer{}, err
	}
	return hdr, pages, dec.Trailer(), nil
}

// checksumPages returns the database checksum of a snapshot's pages.
func checksumPages(pages []testPage) ltx.Checksum {
	c := ltx.ChecksumFlag
	for _, p := range pages {
		c = ltx.ChecksumFlag | (c ^ ltx.ChecksumPage(p.pgno, p.data))
	}
	return c
}

// equalPages reports whether two page lists are identical.
func equalPages(a, b []testPage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].pgno != b[i].pgno || !bytes.Equal(a[i].data, b[i].data) {
			return false
		}
	}
	return true
}
