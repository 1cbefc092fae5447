package ltx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	sltx "github.com/superfly/ltx"
)

// txFile is one transaction in a generated history.
type txFile struct {
	b     []byte
	hdr   ltx.Header
	pages []testPage
}

// history generates a run of LTX files starting from a snapshot, tracking
// the database so each file carries true checksums.
func history(t testing.TB, rng *rand.Rand, pageSize uint32, n int) ([]txFile, *modelDB) {
	m := &modelDB{pageSize: pageSize}
	var files []txFile
	commit := uint32(10)
	for txid := ltx.TXID(1); txid <= ltx.TXID(n); txid++ {
		pre := ltx.Checksum(0)
		if txid > 1 {
			pre = m.checksum(t)
		}
		changed := map[uint32]bool{}
		if txid == 1 {
			for pgno := uint32(1); pgno <= commit; pgno++ {
				changed[pgno] = true
			}
		} else {
			// Shrink now and then, grow now and then, and touch a few pages.
			switch rng.IntN(6) {
			case 0:
				commit = max(1, commit-uint32(rng.IntN(4)))
			case 1, 2:
				grow := uint32(rng.IntN(5))
				for pgno := commit + 1; pgno <= commit+grow; pgno++ {
					changed[pgno] = true
				}
				commit += grow
			}
			for i := rng.IntN(4); i >= 0; i-- {
				changed[uint32(rng.IntN(int(commit)))+1] = true
			}
		}
		for uint32(len(m.pages)) < commit {
			m.pages = append(m.pages, nil)
		}
		m.pages = m.pages[:commit]
		var pages []testPage
		for pgno := range changed {
			p := makePage(rng, pageSize, rng.IntN(2) == 0)
			m.pages[pgno-1] = p
			pages = append(pages, testPage{pgno, p})
		}
		sort.Slice(pages, func(i, j int) bool { return pages[i].pgno < pages[j].pgno })
		hdr := ltx.Header{Version: 3, PageSize: pageSize, Commit: commit, MinTXID: txid, MaxTXID: txid, Timestamp: int64(txid) * 1000, PreApplyChecksum: pre}
		files = append(files, txFile{encodeFile(t, hdr, pages, m.checksum(t)), hdr, pages})
	}
	return files, m
}

func readers(files []txFile) []io.Reader {
	var rs []io.Reader
	for _, f := range files {
		rs = append(rs, bytes.NewReader(f.b))
	}
	return rs
}

func TestCompact_Snapshot(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	files, m := history(t, rng, 512, 60)
	var out bytes.Buffer
	if err := ltx.Compact(&out, readers(files)...); err != nil {
		t.Fatal(err)
	}
	hdr, pages, tr, err := decodeFile(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.IsSnapshot() || hdr.MaxTXID != 60 || hdr.Commit != uint32(len(m.pages)) || hdr.Timestamp != 60000 {
		t.Fatalf("header %+v", hdr)
	}
	if tr.PostApplyChecksum != m.checksum(t) {
		t.Fatal("post-apply checksum")
	}
	for i, p := range pages {
		if p.pgno != uint32(i+1) || !bytes.Equal(p.data, m.pages[i]) {
			t.Fatalf("page %d differs from the newest version", p.pgno)
		}
	}

	// superfly/ltx's compactor must write the same bytes.
	var sout bytes.Buffer
	sc, err := sltx.NewCompactor(&sout, readers(files))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sout.Bytes(), out.Bytes()) {
		t.Fatal("compaction differs from superfly/ltx's")
	}
}

func TestCompact_Incremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	files, _ := history(t, rng, 1024, 40)
	run := files[10:40]
	var out bytes.Buffer
	c := ltx.NewCompactor(&out, readers(run)...)
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	hdr, pages, tr, err := decodeFile(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	first, last := run[0], run[len(run)-1]
	if hdr.MinTXID != 11 || hdr.MaxTXID != 40 || hdr.PreApplyChecksum != first.hdr.PreApplyChecksum || hdr.Commit != last.hdr.Commit {
		t.Fatalf("header %+v", hdr)
	}
	_, _, lastTr, _ := decodeFile(bytes.NewReader(last.b))
	if tr.PostApplyChecksum != lastTr.PostApplyChecksum || c.Trailer() != tr || c.Header().MaxTXID != 40 {
		t.Fatal("post-apply checksum is not the last file's")
	}
	// Newest version of every page within the final commit size.
	want := map[uint32][]byte{}
	for _, f := range run {
		for _, p := range f.pages {
			want[p.pgno] = p.data
		}
	}
	n := 0
	for pgno, data := range want {
		if pgno > hdr.Commit {
			continue
		}
		n++
		found := false
		for _, p := range pages {
			if p.pgno == pgno {
				found = bytes.Equal(p.data, data)
			}
		}
		if !found {
			t.Fatalf("page %d is not the newest version", pgno)
		}
	}
	if n != len(pages) {
		t.Fatalf("%d pages, want %d", len(pages), n)
	}

	// Compacting the compacted output with the rest is the same as
	// compacting everything.
	var all, two bytes.Buffer
	if err := ltx.Compact(&all, readers(files)...); err != nil {
		t.Fatal(err)
	}
	var head bytes.Buffer
	if err := ltx.Compact(&head, readers(files[:10])...); err != nil {
		t.Fatal(err)
	}
	if err := ltx.Compact(&two, bytes.NewReader(head.Bytes()), bytes.NewReader(out.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all.Bytes(), two.Bytes()) {
		t.Fatal("compaction is not associative")
	}
}

func TestCompact_Errors(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	files, _ := history(t, rng, 512, 6)
	other := encodeFile(t, ltx.Header{Version: 3, PageSize: 1024, Commit: 1, MinTXID: 4, MaxTXID: 4, PreApplyChecksum: ltx.ChecksumFlag}, nil, ltx.ChecksumFlag|1)
	corrupt := bytes.Clone(files[2].b)
	corrupt[40] ^= 1 // pre-apply checksum: caught by the file checksum

	cases := []struct {
		name   string
		inputs [][]byte
		want   error
	}{
		{"gap", [][]byte{files[0].b, files[2].b}, ltx.ErrTXIDGap},
		{"overlap", [][]byte{files[1].b, files[1].b}, ltx.ErrTXIDOverlap},
		{"backwards", [][]byte{files[2].b, files[1].b}, ltx.ErrTXIDOverlap},
		{"page size", [][]byte{files[2].b, other}, ltx.ErrPageSizeMismatch},
		{"corrupt input", [][]byte{files[1].b, corrupt}, ltx.ErrChecksumMismatch},
		{"garbage input", [][]byte{files[1].b, []byte("nonsense")}, ltx.ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rs []io.Reader
			for _, b := range tc.inputs {
				rs = append(rs, bytes.NewReader(b))
			}
			if err := ltx.Compact(io.Discard, rs...); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := ltx.Compact(io.Discard); err == nil {
		t.Fatal("no inputs accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ltx.NewCompactor(io.Discard, readers(files)...).Compact(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestCompact_NoChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	a := encodeFile(t, ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 4, MinTXID: 5, MaxTXID: 5}, []testPage{{2, makePage(rng, 512, true)}}, 0)
	b := encodeFile(t, ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 3, MinTXID: 6, MaxTXID: 7}, []testPage{{1, makePage(rng, 512, true)}, {3, makePage(rng, 512, true)}}, 0)
	var out bytes.Buffer
	if err := ltx.Compact(&out, bytes.NewReader(a), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	hdr, pages, tr, err := decodeFile(&out)
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.NoChecksum() || tr.PostApplyChecksum != 0 || len(pages) != 3 || hdr.MinTXID != 5 || hdr.MaxTXID != 7 {
		t.Fatalf("header %+v, %d pages", hdr, len(pages))
	}
}

// TestCompact_LegacyFrames rewrites older frames as size-prefixed blocks.
func TestCompact_LegacyFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	pages := snapshotPages(rng, 512, 3)
	hdr := ltx.Header{Version: 3, PageSize: 512, Commit: 3, MinTXID: 1, MaxTXID: 1}
	legacy := buildRaw(t, hdr, []rawPage{{pgno: 1, legacy: true, data: pages[0].data}, {pgno: 2, legacy: true, data: pages[1].data}, {pgno: 3, legacy: true, data: pages[2].data}}, checksumPages(pages), nil)
	var out bytes.Buffer
	if err := ltx.Compact(&out, bytes.NewReader(legacy)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), encodeFile(t, hdr, pages, 0)) {
		t.Fatal("compacted legacy file differs from a fresh encoding")
	}
}
