package ltx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"slices"
	"sync"
)

// ErrChecksumIndexIncomplete is returned by ChecksumIndex.Checksum while
// some page below the commit size has never been set.
var ErrChecksumIndexIncomplete = errors.New("checksum index is missing pages")

// ChecksumIndexBlockPages is the number of page checksums per persisted
// block. A save rewrites only the blocks that changed, so one commit that
// touches a few pages costs a few 4 KiB writes.
const ChecksumIndexBlockPages = 512

// ChecksumIndex keeps the checksum of every page of a live database and
// their running XOR, so that the database checksum after a commit costs one
// CRC per written page instead of a read of the whole database.
//
// Set replaces a page: it XORs the old page checksum out and the new one in.
// Truncate drops the pages past a new commit size. Checksum returns the
// rolling database checksum, equal to ChecksumDatabase over the same pages.
//
// The index can be saved to a file and loaded again (WriteTo, Load). A save
// writes only the blocks of ChecksumIndexBlockPages checksums that changed
// since the last one, then the file header, with an fsync after each step,
// so a crash leaves either the old or the new state and Load detects a torn
// save. The caller records which database position the index belongs to
// with the TXID passed to Save; on start-up it compares the loaded TXID and
// Checksum with its own position and rebuilds the index from the database
// (BuildChecksumIndex) only if they differ.
//
// It costs 8 bytes per page (2 MiB for a 1 GiB database of 4 KiB pages).
// A ChecksumIndex is safe for concurrent use.
type ChecksumIndex struct {
	mu       sync.Mutex
	saveMu   sync.Mutex // serializes Save
	pageSize uint32
	lockPgno uint32
	pages    []Checksum // pages[pgno-1]; zero for the lock page and unset pages
	sum      Checksum   // XOR of pages, without the flag
	missing  int        // pages below the commit size never set
	dirty    []uint64   // bit set of blocks changed since the last save
	saveGen  uint64     // generation of the last save
	diskSize int64      // persisted file size, to drop blocks after a shrink
}

// NewChecksumIndex returns an empty index (commit size 0) for a database
// with the given page size.
func NewChecksumIndex(pageSize uint32) (*ChecksumIndex, error) {
	if !IsValidPageSize(pageSize) {
		return nil, invalidf(ErrInvalidPageSize, "%d", pageSize)
	}
	return &ChecksumIndex{pageSize: pageSize, lockPgno: LockPgno(pageSize)}, nil
}

// BuildChecksumIndex reads the first commit pages of a database from r and
// returns their index.
func BuildChecksumIndex(r io.Reader, pageSize, commit uint32) (*ChecksumIndex, error) {
	idx, err := NewChecksumIndex(pageSize)
	if err != nil {
		return nil, err
	}
	idx.resize(commit)
	r = bufferedReader(r)
	buf := make([]byte, pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read database page %d of %d: %w", pgno, commit, err)
		}
		if pgno != idx.lockPgno {
			idx.setLocked(pgno, ChecksumPage(pgno, buf))
		}
	}
	return idx, nil
}

// PageSize returns the database page size.
func (idx *ChecksumIndex) PageSize() uint32 { return idx.pageSize }

// Commit returns the database size in pages.
func (idx *ChecksumIndex) Commit() uint32 {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	return uint32(len(idx.pages))
}

// Set records the new contents of page pgno, growing the database if pgno
// is past its end. Pages skipped by such growth must be set before Checksum
// succeeds. The lock page is ignored, as SQLite never writes it.
func (idx *ChecksumIndex) Set(pgno uint32, data []byte) error {
	if pgno == 0 {
		return invalidf(ErrInvalidPageHeader, "page number 0")
	}
	if uint32(len(data)) != idx.pageSize {
		return fmt.Errorf("checksum index: page %d is %d bytes, page size is %d", pgno, len(data), idx.pageSize)
	}
	if pgno == idx.lockPgno {
		return nil
	}
	return idx.SetChecksum(pgno, ChecksumPage(pgno, data))
}

// SetChecksum is Set for a caller that already has the page's checksum
// from ChecksumPage.
func (idx *ChecksumIndex) SetChecksum(pgno uint32, c Checksum) error {
	if pgno == 0 {
		return invalidf(ErrInvalidPageHeader, "page number 0")
	}
	if pgno == idx.lockPgno {
		return nil
	}
	if c&ChecksumFlag == 0 {
		return fmt.Errorf("checksum index: page %d checksum %s lacks the checksum flag", pgno, c)
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if pgno > uint32(len(idx.pages)) {
		idx.resize(pgno)
	}
	idx.setLocked(pgno, c)
	return nil
}

// PageChecksum returns the checksum recorded for pgno, or zero if none.
func (idx *ChecksumIndex) PageChecksum(pgno uint32) Checksum {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if pgno == 0 || pgno > uint32(len(idx.pages)) {
		return 0
	}
	return idx.pages[pgno-1]
}

// Truncate sets the database size to commit pages. Pages past it are
// dropped; pages added by growing must be set before Checksum succeeds.
func (idx *ChecksumIndex) Truncate(commit uint32) {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	idx.resize(commit)
}

// Checksum returns the rolling database checksum, or an error wrapping
// ErrChecksumIndexIncomplete if a page below the commit size was never set.
// An empty database has checksum ChecksumFlag.
func (idx *ChecksumIndex) Checksum() (Checksum, error) {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if idx.missing > 0 {
		return 0, fmt.Errorf("%w: %d of %d pages never set", ErrChecksumIndexIncomplete, idx.missing, len(idx.pages))
	}
	return ChecksumFlag | idx.sum, nil
}

// setLocked replaces the checksum of page pgno, which must be in range.
func (idx *ChecksumIndex) setLocked(pgno uint32, c Checksum) {
	old := idx.pages[pgno-1]
	if old == 0 && pgno != idx.lockPgno {
		idx.missing--
	}
	idx.sum ^= (old ^ c) &^ ChecksumFlag
	idx.pages[pgno-1] = c
	idx.markDirty(pgno)
}

// resize changes the number of pages, XORing out dropped pages.
func (idx *ChecksumIndex) resize(commit uint32) {
	n := uint32(len(idx.pages))
	if commit < n {
		for pgno := commit + 1; pgno <= n; pgno++ {
			c := idx.pages[pgno-1]
			if c == 0 {
				if pgno != idx.lockPgno {
					idx.missing--
				}
				continue
			}
			idx.sum ^= c &^ ChecksumFlag
		}
		clear(idx.pages[commit:])
		idx.pages = idx.pages[:commit]
		if commit > 0 {
			idx.markDirty(commit)
		}
		return
	}
	for pgno := n + 1; pgno <= commit; pgno++ {
		if pgno != idx.lockPgno {
			idx.missing++
		}
		idx.pages = append(idx.pages, 0)
		idx.markDirty(pgno)
	}
}

// markDirty records that the block holding pgno must be saved.
func (idx *ChecksumIndex) markDirty(pgno uint32) {
	blk := int((pgno - 1) / ChecksumIndexBlockPages)
	for len(idx.dirty) <= blk/64 {
		idx.dirty = append(idx.dirty, 0)
	}
	idx.dirty[blk/64] |= 1 << (blk % 64)
}

// Persisted layout: a 64-byte header, then one record per block of
// ChecksumIndexBlockPages page checksums, each followed by the generation
// of the save that wrote it and a CRC-64 of the record.
const (
	checksumIndexMagic      = "FRYCKIX1"
	checksumIndexHeaderSize = 64
	checksumIndexRecordSize = ChecksumIndexBlockPages*8 + 16
)

// ChecksumIndexFile is where a ChecksumIndex is saved; *os.File is one.
type ChecksumIndexFile interface {
	io.WriterAt
	Truncate(size int64) error
	Sync() error
}

// Save writes the blocks changed since the last Save or Load, then a header
// recording txid, the database position the index reflects. An index that
// was never saved or loaded writes every block. It syncs f twice so that
// the header never describes blocks that did not reach the disk.
//
// The index is locked only while the changed blocks are copied, not during
// the writes and syncs, so commits calling Set are not held up by a save.
// Saves are serialized. If a save fails, its blocks stay marked as changed.
func (idx *ChecksumIndex) Save(f ChecksumIndexFile, txid TXID) error {
	idx.saveMu.Lock()
	defer idx.saveMu.Unlock()

	type block struct {
		n   int
		rec []byte
	}
	idx.mu.Lock()
	gen := idx.saveGen + 1
	all := idx.saveGen == 0
	nblocks := (len(idx.pages) + ChecksumIndexBlockPages - 1) / ChecksumIndexBlockPages
	var blocks []block
	for blk := 0; blk < nblocks; blk++ {
		if !all && (blk/64 >= len(idx.dirty) || idx.dirty[blk/64]&(1<<(blk%64)) == 0) {
			continue
		}
		rec := make([]byte, checksumIndexRecordSize)
		lo := blk * ChecksumIndexBlockPages
		hi := min(lo+ChecksumIndexBlockPages, len(idx.pages))
		for i, c := range idx.pages[lo:hi] {
			binary.BigEndian.PutUint64(rec[i*8:], uint64(c))
		}
		binary.BigEndian.PutUint64(rec[ChecksumIndexBlockPages*8:], gen)
		binary.BigEndian.PutUint64(rec[ChecksumIndexBlockPages*8+8:], crc64.Checksum(rec[:ChecksumIndexBlockPages*8+8], crcTable))
		blocks = append(blocks, block{blk, rec})
	}
	hdr := make([]byte, checksumIndexHeaderSize)
	copy(hdr, checksumIndexMagic)
	binary.BigEndian.PutUint32(hdr[8:], idx.pageSize)
	binary.BigEndian.PutUint32(hdr[12:], uint32(len(idx.pages)))
	binary.BigEndian.PutUint64(hdr[16:], gen)
	binary.BigEndian.PutUint64(hdr[24:], uint64(txid))
	binary.BigEndian.PutUint64(hdr[32:], uint64(ChecksumFlag|idx.sum))
	binary.BigEndian.PutUint64(hdr[40:], uint64(idx.missing))
	binary.BigEndian.PutUint64(hdr[56:], crc64.Checksum(hdr[:56], crcTable))
	saved := slices.Clone(idx.dirty)
	clear(idx.dirty)
	diskSize := idx.diskSize
	idx.mu.Unlock()

	err := func() error {
		for _, b := range blocks {
			if _, err := f.WriteAt(b.rec, checksumIndexHeaderSize+int64(b.n)*checksumIndexRecordSize); err != nil {
				return fmt.Errorf("save checksum index block %d: %w", b.n, err)
			}
		}
		size := checksumIndexHeaderSize + int64(nblocks)*checksumIndexRecordSize
		if size < diskSize || all {
			if err := f.Truncate(size); err != nil {
				return fmt.Errorf("save checksum index: truncate: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("save checksum index: sync blocks: %w", err)
		}
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return fmt.Errorf("save checksum index header: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("save checksum index: sync header: %w", err)
		}
		diskSize = size
		return nil
	}()

	idx.mu.Lock()
	defer idx.mu.Unlock()
	if err != nil {
		for i, w := range saved {
			for len(idx.dirty) <= i {
				idx.dirty = append(idx.dirty, 0)
			}
			idx.dirty[i] |= w
		}
		return err
	}
	idx.saveGen = gen
	idx.diskSize = diskSize
	return nil
}

// LoadChecksumIndex reads an index saved by Save from r, a file of size
// bytes, and returns it with the TXID given to Save. It returns an error
// wrapping ErrInvalidChecksumFile if the file is damaged or a save was cut
// short; the caller should then rebuild the index from the database.
func LoadChecksumIndex(r io.ReaderAt, size int64) (*ChecksumIndex, TXID, error) {
	hdr := make([]byte, checksumIndexHeaderSize)
	if n, _ := r.ReadAt(hdr, 0); n != len(hdr) {
		return nil, 0, fmt.Errorf("%w: header is truncated", ErrInvalidChecksumFile)
	}
	if string(hdr[:8]) != checksumIndexMagic {
		return nil, 0, fmt.Errorf("%w: bad magic", ErrInvalidChecksumFile)
	}
	if crc64.Checksum(hdr[:56], crcTable) != binary.BigEndian.Uint64(hdr[56:]) {
		return nil, 0, fmt.Errorf("%w: header checksum mismatch", ErrInvalidChecksumFile)
	}
	pageSize := binary.BigEndian.Uint32(hdr[8:])
	commit := binary.BigEndian.Uint32(hdr[12:])
	gen := binary.BigEndian.Uint64(hdr[16:])
	txid := TXID(binary.BigEndian.Uint64(hdr[24:]))
	sum := Checksum(binary.BigEndian.Uint64(hdr[32:]))
	missing := binary.BigEndian.Uint64(hdr[40:])

	idx, err := NewChecksumIndex(pageSize)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidChecksumFile, err)
	}
	nblocks := (int64(commit) + ChecksumIndexBlockPages - 1) / ChecksumIndexBlockPages
	want := checksumIndexHeaderSize + nblocks*checksumIndexRecordSize
	if size != want {
		return nil, 0, fmt.Errorf("%w: file is %d bytes, %d pages need %d", ErrInvalidChecksumFile, size, commit, want)
	}
	idx.resize(commit)
	rec := make([]byte, checksumIndexRecordSize)
	for blk := int64(0); blk < nblocks; blk++ {
		if n, _ := r.ReadAt(rec, checksumIndexHeaderSize+blk*checksumIndexRecordSize); n != len(rec) {
			return nil, 0, fmt.Errorf("%w: block %d is truncated", ErrInvalidChecksumFile, blk)
		}
		body := rec[:ChecksumIndexBlockPages*8+8]
		if crc64.Checksum(body, crcTable) != binary.BigEndian.Uint64(rec[ChecksumIndexBlockPages*8+8:]) {
			return nil, 0, fmt.Errorf("%w: block %d checksum mismatch", ErrInvalidChecksumFile, blk)
		}
		if g := binary.BigEndian.Uint64(rec[ChecksumIndexBlockPages*8:]); g > gen {
			return nil, 0, fmt.Errorf("%w: block %d is from an unfinished save", ErrInvalidChecksumFile, blk)
		}
		lo := uint32(blk) * ChecksumIndexBlockPages
		for i := uint32(0); i < ChecksumIndexBlockPages && lo+i < commit; i++ {
			pgno := lo + i + 1
			c := Checksum(binary.BigEndian.Uint64(rec[i*8:]))
			if c == 0 {
				continue
			}
			if pgno == idx.lockPgno || c&ChecksumFlag == 0 {
				return nil, 0, fmt.Errorf("%w: bad checksum for page %d", ErrInvalidChecksumFile, pgno)
			}
			idx.setLocked(pgno, c)
		}
	}
	if ChecksumFlag|idx.sum != sum || uint64(idx.missing) != missing {
		return nil, 0, fmt.Errorf("%w: blocks do not add up to the saved checksum", ErrInvalidChecksumFile)
	}
	idx.saveGen = gen
	idx.diskSize = size
	clear(idx.dirty)
	return idx, txid, nil
}
