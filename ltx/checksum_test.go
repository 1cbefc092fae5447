package ltx_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	sltx "github.com/superfly/ltx"
)

func TestChecksumPage_MatchesSuperfly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	for _, sz := range []uint32{512, 4096, 65536} {
		for pgno := uint32(1); pgno < 2000; pgno += 97 {
			data := makePage(rng, sz, pgno%2 == 0)
			if uint64(ltx.ChecksumPage(pgno, data)) != uint64(sltx.ChecksumPage(pgno, data)) {
				t.Fatalf("page %d size %d differs", pgno, sz)
			}
		}
	}
}

func TestChecksumDatabase_MatchesSuperfly(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	var db []byte
	for i := 0; i < 50; i++ {
		db = append(db, makePage(rng, 4096, i%3 == 0)...)
	}
	got, err := ltx.ChecksumDatabase(bytes.NewReader(db), 4096, 50)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sltx.ChecksumReader(bytes.NewReader(db), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(got) != uint64(want) {
		t.Fatalf("got %s, superfly %s", got, want)
	}
	got2, err := ltx.ChecksumDatabaseFile(bytes.NewReader(db), int64(len(db)), 4096)
	if err != nil || got2 != got {
		t.Fatalf("ChecksumDatabaseFile = %s, %v", got2, err)
	}
	if _, err := ltx.ChecksumDatabase(bytes.NewReader(db), 4096, 51); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short database: %v", err)
	}
	if _, err := ltx.ChecksumDatabaseFile(bytes.NewReader(db), int64(len(db)-1), 4096); err == nil {
		t.Fatal("partial page accepted")
	}
	if _, err := ltx.ChecksumDatabase(bytes.NewReader(db), 1000, 1); !errors.Is(err, ltx.ErrInvalidPageSize) {
		t.Fatalf("bad page size: %v", err)
	}
	if c, _ := ltx.ChecksumDatabase(bytes.NewReader(nil), 4096, 0); c != ltx.ChecksumFlag {
		t.Fatalf("empty database: %s", c)
	}
}

// patternReader yields a database of n pages whose bytes depend on their
// position, without holding it in memory.
type patternReader struct {
	off, size int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if int64(len(p)) > r.size-r.off {
		p = p[:r.size-r.off]
	}
	for i := range p {
		o := r.off + int64(i)
		p[i] = byte(o>>16) ^ byte(o>>8)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// TestChecksumDatabase_LockPage runs past the 1 GiB lock page, which both
// implementations must skip.
func TestChecksumDatabase_LockPage(t *testing.T) {
	const pageSize = 65536
	lock := ltx.LockPgno(pageSize)
	commit := lock + 2
	size := int64(commit) * pageSize
	got, err := ltx.ChecksumDatabase(&patternReader{size: size}, pageSize, commit)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sltx.ChecksumReader(&patternReader{size: size}, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(got) != uint64(want) {
		t.Fatalf("got %s, superfly %s", got, want)
	}
	idx, err := ltx.BuildChecksumIndex(&patternReader{size: size}, pageSize, commit)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := idx.Checksum(); err != nil || c != got {
		t.Fatalf("index checksum %s, %v; want %s", c, err, got)
	}
}

func TestParseChecksum(t *testing.T) {
	c, err := ltx.ParseChecksum("8000000000000001")
	if err != nil || c != ltx.ChecksumFlag|1 || c.String() != "8000000000000001" {
		t.Fatalf("%s %v", c, err)
	}
	for _, bad := range []string{"", "800000000000001", "zz00000000000001"} {
		if _, err := ltx.ParseChecksum(bad); err == nil {
			t.Errorf("ParseChecksum(%q) succeeded", bad)
		}
	}
}
