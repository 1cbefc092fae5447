package ltx_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// modelDB is an in-memory database used to check the index against
// ChecksumDatabase.
type modelDB struct {
	pageSize uint32
	pages    [][]byte
}

func (m *modelDB) bytes() []byte {
	var b []byte
	for _, p := range m.pages {
		b = append(b, p...)
	}
	return b
}

func (m *modelDB) checksum(t testing.TB) ltx.Checksum {
	c, err := ltx.ChecksumDatabase(bytes.NewReader(m.bytes()), m.pageSize, uint32(len(m.pages)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestChecksumIndex_MatchesFullScan(t *testing.T) {
	const pageSize = 512
	rng := rand.New(rand.NewPCG(4, 4))
	m := &modelDB{pageSize: pageSize}
	idx, err := ltx.NewChecksumIndex(pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := idx.Checksum(); c != ltx.ChecksumFlag {
		t.Fatalf("empty: %s", c)
	}
	for step := 0; step < 400; step++ {
		switch op := rng.IntN(10); {
		case op < 7: // write a page, sometimes growing the database
			n := uint32(len(m.pages))
			pgno := uint32(rng.IntN(int(n)+3)) + 1
			for uint32(len(m.pages)) < pgno {
				// Growth writes every new page, as SQLite does.
				p := makePage(rng, pageSize, true)
				m.pages = append(m.pages, p)
				if err := idx.Set(uint32(len(m.pages)), p); err != nil {
					t.Fatal(err)
				}
			}
			p := makePage(rng, pageSize, false)
			m.pages[pgno-1] = p
			if err := idx.Set(pgno, p); err != nil {
				t.Fatal(err)
			}
		default: // shrink
			if len(m.pages) > 0 {
				n := uint32(rng.IntN(len(m.pages)))
				m.pages = m.pages[:n]
				idx.Truncate(n)
			}
		}
		got, err := idx.Checksum()
		if err != nil {
			t.Fatal(err)
		}
		if want := m.checksum(t); got != want {
			t.Fatalf("step %d: index %s, scan %s", step, got, want)
		}
		if idx.Commit() != uint32(len(m.pages)) {
			t.Fatalf("commit %d, want %d", idx.Commit(), len(m.pages))
		}
	}
}

func TestChecksumIndex_Incomplete(t *testing.T) {
	idx, _ := ltx.NewChecksumIndex(4096)
	page := make([]byte, 4096)
	if err := idx.Set(3, page); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Checksum(); !errors.Is(err, ltx.ErrChecksumIndexIncomplete) {
		t.Fatalf("got %v", err)
	}
	idx.Truncate(5)
	_ = idx.Set(1, page)
	_ = idx.Set(2, page)
	_ = idx.Set(4, page)
	if _, err := idx.Checksum(); !errors.Is(err, ltx.ErrChecksumIndexIncomplete) {
		t.Fatalf("page 5 unset: %v", err)
	}
	idx.Truncate(4)
	if _, err := idx.Checksum(); err != nil {
		t.Fatal(err)
	}
	if err := idx.Set(0, page); err == nil {
		t.Fatal("page 0 accepted")
	}
	if err := idx.Set(1, page[:10]); err == nil {
		t.Fatal("short page accepted")
	}
	if _, err := ltx.NewChecksumIndex(3000); !errors.Is(err, ltx.ErrInvalidPageSize) {
		t.Fatalf("bad page size: %v", err)
	}
	if idx.PageChecksum(1) != ltx.ChecksumPage(1, page) || idx.PageChecksum(99) != 0 {
		t.Fatal("PageChecksum")
	}
}

// countingFile records the writes of a save.
type countingFile struct {
	*os.File
	writes int
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	f.writes++
	return f.File.WriteAt(p, off)
}

func TestChecksumIndex_SaveLoad(t *testing.T) {
	const pageSize = 1024
	rng := rand.New(rand.NewPCG(8, 8))
	m := &modelDB{pageSize: pageSize}
	for i := 0; i < 3000; i++ {
		m.pages = append(m.pages, makePage(rng, pageSize, true))
	}
	idx, err := ltx.BuildChecksumIndex(bytes.NewReader(m.bytes()), pageSize, 3000)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "db.checksums")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cf := &countingFile{File: f}
	if err := idx.Save(cf, 10); err != nil {
		t.Fatal(err)
	}
	if cf.writes != 6+1 { // 3000 pages = 6 blocks, then the header
		t.Fatalf("first save wrote %d times", cf.writes)
	}

	// Change two pages in one block: the next save writes one block.
	for _, pgno := range []uint32{700, 800} {
		p := makePage(rng, pageSize, false)
		m.pages[pgno-1] = p
		_ = idx.Set(pgno, p)
	}
	cf.writes = 0
	if err := idx.Save(cf, 11); err != nil {
		t.Fatal(err)
	}
	if cf.writes != 1+1 {
		t.Fatalf("second save wrote %d times", cf.writes)
	}

	load := func() (*ltx.ChecksumIndex, ltx.TXID, error) {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return ltx.LoadChecksumIndex(f, fi.Size())
	}
	loaded, txid, err := load()
	if err != nil {
		t.Fatal(err)
	}
	want := m.checksum(t)
	if got, _ := loaded.Checksum(); got != want || txid != 11 || loaded.Commit() != 3000 {
		t.Fatalf("loaded %s txid %d commit %d, want %s", got, txid, loaded.Commit(), want)
	}

	// Shrink, save with the loaded index, load again.
	m.pages = m.pages[:1100]
	loaded.Truncate(1100)
	p := makePage(rng, pageSize, true)
	m.pages[5] = p
	_ = loaded.Set(6, p)
	if err := loaded.Save(f, 12); err != nil {
		t.Fatal(err)
	}
	again, txid, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Checksum(); got != m.checksum(t) || txid != 12 {
		t.Fatalf("after shrink: %s txid %d, want %s", got, txid, m.checksum(t))
	}

	// A fresh index saved over a bigger file replaces it.
	small, _ := ltx.NewChecksumIndex(pageSize)
	_ = small.Set(1, m.pages[0])
	f2, _ := os.Create(path + "2")
	defer f2.Close()
	if err := idx.Save(f2, 1); err != nil {
		t.Fatal(err)
	}
	if err := small.Save(f2, 2); err != nil {
		t.Fatal(err)
	}
	fi, _ := f2.Stat()
	if s, txid, err := ltx.LoadChecksumIndex(f2, fi.Size()); err != nil || txid != 2 || s.Commit() != 1 {
		t.Fatalf("fresh save over bigger file: %v", err)
	}
}

func TestChecksumIndex_LoadDamaged(t *testing.T) {
	idx, _ := ltx.NewChecksumIndex(512)
	rng := rand.New(rand.NewPCG(1, 9))
	for pgno := uint32(1); pgno <= 1500; pgno++ {
		_ = idx.Set(pgno, makePage(rng, 512, true))
	}
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "a"))
	defer f.Close()
	if err := idx.Save(f, 3); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(f.Name())

	load := func(b []byte) error {
		_, _, err := ltx.LoadChecksumIndex(bytes.NewReader(b), int64(len(b)))
		return err
	}
	if err := load(good); err != nil {
		t.Fatal(err)
	}
	// Every truncation and every byte flip must be detected.
	for n := 0; n < len(good); n += 97 {
		if err := load(good[:n]); !errors.Is(err, ltx.ErrInvalidChecksumFile) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
	for i := 0; i < len(good); i += 13 {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		if err := load(b); !errors.Is(err, ltx.ErrInvalidChecksumFile) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}

	// A save cut short after its blocks but before its header: the blocks
	// carry a newer generation than the header.
	_ = idx.Set(2, makePage(rng, 512, false))
	if err := idx.Save(&headerlessFile{f}, 4); err != nil {
		t.Fatal(err)
	}
	torn, _ := os.ReadFile(f.Name())
	if err := load(torn); !errors.Is(err, ltx.ErrInvalidChecksumFile) {
		t.Fatalf("torn save: %v", err)
	}
}

// headerlessFile drops the header write of a save, as a crash would.
type headerlessFile struct{ *os.File }

func (f *headerlessFile) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 {
		return len(p), nil
	}
	return f.File.WriteAt(p, off)
}

// failingFile fails its first sync.
type failingFile struct {
	*os.File
	failed bool
}

func (f *failingFile) Sync() error {
	if !f.failed {
		f.failed = true
		return errBoom
	}
	return f.File.Sync()
}

func TestChecksumIndex_FailedSaveKeepsChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	idx, _ := ltx.NewChecksumIndex(512)
	for pgno := uint32(1); pgno <= 2000; pgno++ {
		_ = idx.Set(pgno, makePage(rng, 512, true))
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "idx"))
	defer f.Close()
	if err := idx.Save(f, 1); err != nil {
		t.Fatal(err)
	}
	_ = idx.Set(1500, makePage(rng, 512, false))
	if err := idx.Save(&failingFile{File: f}, 2); !errors.Is(err, errBoom) {
		t.Fatalf("got %v", err)
	}
	if err := idx.Save(f, 3); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	loaded, txid, err := ltx.LoadChecksumIndex(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := loaded.Checksum()
	b, _ := idx.Checksum()
	if a != b || txid != 3 || loaded.PageChecksum(1500) != idx.PageChecksum(1500) {
		t.Fatal("the change from the failed save was lost")
	}
}

// TestChecksumIndex_ConcurrentSave saves while pages change; run with -race.
func TestChecksumIndex_ConcurrentSave(t *testing.T) {
	idx, _ := ltx.NewChecksumIndex(512)
	page := make([]byte, 512)
	for pgno := uint32(1); pgno <= 3000; pgno++ {
		_ = idx.Set(pgno, page)
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "idx"))
	defer f.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 1))
		p := make([]byte, 512)
		for i := 0; i < 5000; i++ {
			p[0] = byte(i)
			_ = idx.Set(uint32(rng.IntN(3000))+1, p)
		}
	}()
	for i := 0; i < 10; i++ {
		if err := idx.Save(f, ltx.TXID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if err := idx.Save(f, 99); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	loaded, _, err := ltx.LoadChecksumIndex(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := loaded.Checksum()
	b, _ := idx.Checksum()
	if a != b {
		t.Fatal("loaded index differs")
	}
}

func TestChecksumIndex_SetChecksum(t *testing.T) {
	a, _ := ltx.NewChecksumIndex(512)
	b, _ := ltx.NewChecksumIndex(512)
	page := makePage(rand.New(rand.NewPCG(1, 5)), 512, false)
	_ = a.Set(7, page)
	if err := b.SetChecksum(7, ltx.ChecksumPage(7, page)); err != nil {
		t.Fatal(err)
	}
	if a.PageChecksum(7) != b.PageChecksum(7) || a.Commit() != b.Commit() {
		t.Fatal("SetChecksum differs from Set")
	}
	if err := b.SetChecksum(7, 5); err == nil {
		t.Fatal("checksum without flag accepted")
	}
	if err := b.SetChecksum(0, ltx.ChecksumFlag); err == nil {
		t.Fatal("page 0 accepted")
	}
}
