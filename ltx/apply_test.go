package ltx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// onlyReader hides every method but Read.
type onlyReader struct{ r io.Reader }

func (r onlyReader) Read(p []byte) (int, error) { return r.r.Read(p) }

func TestApply_History(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	files, _ := history(t, rng, 1024, 30)
	for _, withIndex := range []bool{false, true} {
		db, err := os.Create(filepath.Join(t.TempDir(), "db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var idx *ltx.ChecksumIndex
		if withIndex {
			idx, _ = ltx.NewChecksumIndex(1024)
		}
		m := &modelDB{pageSize: 1024}
		for i, f := range files {
			var r io.Reader = bytes.NewReader(f.b)
			if i%2 == 1 {
				r = onlyReader{r} // spooled to a temporary file
			}
			hdr, tr, err := ltx.ApplyWithIndex(context.Background(), db, r, idx)
			if err != nil {
				t.Fatalf("apply TXID %d: %v", f.hdr.MinTXID, err)
			}
			for uint32(len(m.pages)) < f.hdr.Commit {
				m.pages = append(m.pages, nil)
			}
			m.pages = m.pages[:f.hdr.Commit]
			for _, p := range f.pages {
				m.pages[p.pgno-1] = p.data
			}
			got, _ := os.ReadFile(db.Name())
			if !bytes.Equal(got, m.bytes()) {
				t.Fatalf("TXID %d: database differs", hdr.MinTXID)
			}
			if tr.PostApplyChecksum != m.checksum(t) {
				t.Fatal("trailer")
			}
			if idx != nil {
				if c, err := idx.Checksum(); err != nil || c != tr.PostApplyChecksum {
					t.Fatalf("index %s %v", c, err)
				}
			}
		}
	}
}

func TestApply_RefusesAndKeepsDatabase(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	files, _ := history(t, rng, 512, 5)
	db, err := os.Create(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, f := range files[:2] {
		if _, _, err := ltx.Apply(context.Background(), db, bytes.NewReader(f.b)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(db.Name())
	idx, err := ltx.BuildChecksumIndex(bytes.NewReader(before), 512, uint32(len(before)/512))
	if err != nil {
		t.Fatal(err)
	}
	idxBefore, _ := idx.Checksum()

	corrupt := bytes.Clone(files[2].b)
	corrupt[len(corrupt)-30] ^= 1 // in the page index
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		b    []byte
		want error
	}{
		{"skips a transaction", context.Background(), files[3].b, ltx.ErrPreApplyMismatch},
		{"replays a transaction", context.Background(), files[1].b, ltx.ErrPreApplyMismatch},
		{"corrupt file", context.Background(), corrupt, ltx.ErrInvalidFile},
		{"truncated file", context.Background(), files[2].b[:len(files[2].b)/2], ltx.ErrTruncated},
		{"cancelled", cancelled, files[2].b, context.Canceled},
	}
	for _, tc := range cases {
		for _, withIndex := range []bool{false, true} {
			var ix *ltx.ChecksumIndex
			if withIndex {
				ix = idx
			}
			_, _, err := ltx.ApplyWithIndex(tc.ctx, db, bytes.NewReader(tc.b), ix)
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
			}
			after, _ := os.ReadFile(db.Name())
			if !bytes.Equal(before, after) {
				t.Fatalf("%s: database changed", tc.name)
			}
			if c, _ := idx.Checksum(); c != idxBefore {
				t.Fatalf("%s: index changed", tc.name)
			}
		}
	}

	wrongSize, _ := ltx.NewChecksumIndex(4096)
	if _, _, err := ltx.ApplyWithIndex(context.Background(), db, bytes.NewReader(files[2].b), wrongSize); !errors.Is(err, ltx.ErrPageSizeMismatch) {
		t.Fatalf("index page size: %v", err)
	}

	// A file whose post-apply checksum is wrong is caught after writing.
	hdr := files[2].hdr
	bad := encodeFile(t, hdr, files[2].pages, ltx.ChecksumFlag|12345)
	if _, _, err := ltx.Apply(context.Background(), db, bytes.NewReader(bad)); !errors.Is(err, ltx.ErrPostApplyMismatch) {
		t.Fatalf("post-apply: %v", err)
	}
}
