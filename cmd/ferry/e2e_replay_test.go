package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// replayResult is what replaying a database's local LTX log produced.
type replayResult struct {
	Image    []byte       // the database rebuilt from nothing
	PageSize uint32       // page size of the database
	Files    int          // LTX files applied
	MaxTXID  ltx.TXID     // TXID of the last change set
	Checksum ltx.Checksum // post-apply checksum of the last change set
}

// replayLTXLog rebuilds database name from its local LTX log alone, onto an
// empty image, checking on the way that the log is one unbroken chain: each
// file starts one TXID after the previous one ends, and its pre-apply
// checksum is the rolling checksum of the image it is applied to, and its
// post-apply checksum the rolling checksum of the image after it.
func replayLTXLog(t *testing.T, m *testMount, name string) replayResult {
	t.Helper()
	dir := m.LTXDir(name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read LTX log of %s: %v", name, err)
	}
	type logFile struct {
		name     string
		min, max ltx.TXID
	}
	var files []logFile
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ltx") {
			continue
		}
		min, max, err := ferry.ParseLTXFilename(e.Name())
		if err != nil {
			t.Fatalf("LTX log of %s: %v", name, err)
		}
		files = append(files, logFile{e.Name(), min, max})
	}
	if len(files) == 0 {
		t.Fatalf("LTX log of %s is empty (%s)", name, dir)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].min < files[j].min })

	var (
		res      replayResult
		pageSize uint32
		// pageSums holds each page's checksum, so the rolling checksum can
		// be updated page by page, exactly as the log claims it was.
		pageSums []ltx.Checksum
		rolling  ltx.Checksum
	)
	for i, lf := range files {
		if want := res.MaxTXID + 1; lf.min != want {
			t.Fatalf("LTX log of %s: %s follows TXID %d; want min TXID %d", name, lf.name, res.MaxTXID, want)
		}
		hdr, pages, trailer, err := decodeLTXFile(filepath.Join(dir, lf.name))
		if err != nil {
			t.Fatalf("LTX log of %s: %v", name, err)
		}
		if hdr.MinTXID != lf.min || hdr.MaxTXID != lf.max {
			t.Fatalf("LTX log of %s: %s has header TXIDs %d-%d", name, lf.name, hdr.MinTXID, hdr.MaxTXID)
		}
		if i == 0 {
			if lf.min != 1 {
				t.Fatalf("LTX log of %s starts at TXID %d, not 1: cannot replay from an empty file", name, lf.min)
			}
			pageSize = hdr.PageSize
		} else {
			if hdr.PageSize != pageSize {
				t.Fatalf("LTX log of %s: %s changes page size from %d to %d", name, lf.name, pageSize, hdr.PageSize)
			}
			if want := rolling | ltx.ChecksumFlag; hdr.PreApplyChecksum != want {
				t.Fatalf("LTX log of %s: %s pre-apply checksum %016x, replayed image has %016x",
					name, lf.name, uint64(hdr.PreApplyChecksum), uint64(want))
			}
		}

		// Shrink first: pages beyond the new size leave the checksum.
		if n := int(hdr.Commit); n < len(pageSums) {
			for _, c := range pageSums[n:] {
				rolling ^= c
			}
			pageSums = pageSums[:n]
			res.Image = res.Image[:n*int(pageSize)]
		}
		for n := int(hdr.Commit); len(pageSums) < n; {
			pageSums = append(pageSums, 0)
			res.Image = append(res.Image, make([]byte, pageSize)...)
		}
		for _, p := range pages {
			if p.pgno == 0 || p.pgno > hdr.Commit {
				t.Fatalf("LTX log of %s: %s has page %d beyond commit size %d", name, lf.name, p.pgno, hdr.Commit)
			}
			off := int(p.pgno-1) * int(pageSize)
			copy(res.Image[off:off+int(pageSize)], p.data)
			rolling ^= pageSums[p.pgno-1]
			pageSums[p.pgno-1] = ltx.ChecksumPage(p.pgno, p.data)
			rolling ^= pageSums[p.pgno-1]
		}
		// Pages that appeared by growth but that no change set wrote would
		// make the image disagree with the log: every page of a database
		// beyond its old end is written by the transaction that grows it,
		// except the lock page, which is never stored.
		lock := ltx.LockPgno(pageSize)
		for pgno := uint32(1); pgno <= hdr.Commit; pgno++ {
			if pageSums[pgno-1] == 0 && pgno != lock {
				t.Fatalf("LTX log of %s: after %s page %d of %d was never written", name, lf.name, pgno, hdr.Commit)
			}
		}
		if got := rolling | ltx.ChecksumFlag; trailer.PostApplyChecksum != got {
			t.Fatalf("LTX log of %s: %s post-apply checksum %016x, replayed image has %016x",
				name, lf.name, uint64(trailer.PostApplyChecksum), uint64(got))
		}
		res.Files++
		res.PageSize = pageSize
		res.MaxTXID = lf.max
		res.Checksum = trailer.PostApplyChecksum
	}
	return res
}

type ltxPage struct {
	pgno uint32
	data []byte
}

// decodeLTXFile reads a whole LTX file, checking its file checksum.
func decodeLTXFile(path string) (ltx.Header, []ltxPage, ltx.Trailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return ltx.Header{}, nil, ltx.Trailer{}, err
	}
	defer f.Close()
	dec := ltx.NewDecoder(f)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, nil, ltx.Trailer{}, fmt.Errorf("%s: decode header: %w", path, err)
	}
	hdr := dec.Header()
	var pages []ltxPage
	for {
		var ph ltx.PageHeader
		data := make([]byte, hdr.PageSize)
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return hdr, nil, ltx.Trailer{}, fmt.Errorf("%s: decode page: %w", path, err)
		}
		pages = append(pages, ltxPage{ph.Pgno, data})
	}
	if err := dec.Close(); err != nil {
		return hdr, nil, ltx.Trailer{}, fmt.Errorf("%s: close: %w", path, err)
	}
	return hdr, pages, dec.Trailer(), nil
}

// checkReplay replays database name's LTX log and requires the result to
// equal, byte for byte, the database as read through the mount and as
// stored under the data directory, and its last post-apply checksum to
// equal the checksum computed from scratch. The database must be quiescent:
// no open connections and, in WAL mode, checkpointed.
func checkReplay(t *testing.T, m *testMount, name string) replayResult {
	t.Helper()
	res := replayLTXLog(t, m, name)
	if applied := applyLTXLog(t, m, name, res.PageSize); !bytes.Equal(applied, res.Image) {
		t.Fatalf("ltx.Apply of the LTX log of %s gives %d bytes that differ from the replayed image at byte %d",
			name, len(applied), firstDiff(applied, res.Image))
	}
	for _, path := range []string{m.Path(name), m.TreePath(name)} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, res.Image) {
			t.Fatalf("%s: %d bytes differ from the %d-byte image replayed from %d LTX files (first difference at byte %d)",
				path, len(got), len(res.Image), res.Files, firstDiff(got, res.Image))
		}
		sum, err := ltx.ChecksumDatabase(bytes.NewReader(got), res.PageSize, uint32(len(got)/int(res.PageSize)))
		if err != nil {
			t.Fatalf("%s: checksum: %v", path, err)
		}
		if sum != res.Checksum {
			t.Fatalf("%s: checksum from scratch %016x, LTX log ends at %016x", path, uint64(sum), uint64(res.Checksum))
		}
	}
	return res
}

// applyLTXLog applies database name's LTX log with ltx.ApplyWithIndex onto
// an empty file, as a restore does, and returns the file's contents.
func applyLTXLog(t *testing.T, m *testMount, name string, pageSize uint32) []byte {
	t.Helper()
	ents, err := os.ReadDir(m.LTXDir(name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "applied.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx, err := ltx.NewChecksumIndex(pageSize)
	if err != nil {
		t.Fatal(err)
	}
	// os.ReadDir sorts by name, and the fixed-width hex names sort by TXID.
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ltx") {
			continue
		}
		lf, err := os.Open(filepath.Join(m.LTXDir(name), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = ltx.ApplyWithIndex(context.Background(), f, lf, idx)
		lf.Close()
		if err != nil {
			t.Fatalf("ltx.Apply %s of %s: %v", e.Name(), name, err)
		}
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
