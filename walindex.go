package ferry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// SQLite's WAL index (the -shm file), as wal.c lays it out: 32 KiB pages,
// each a run of page numbers (one per WAL frame) and a hash table of 8192
// two-byte slots over them. The first page starts with the two copies of
// the header and the checkpoint info. Every integer is in the host's byte
// order; Ferry only runs on little-endian hosts.
const (
	walIndexPageSize = 32768
	walIndexHdrSize  = 136
	walIndexVersion  = 3007000
	walHashSlots     = 8192
	walHashPages     = 4096                             // frames per index page
	walHashPagesOne  = walHashPages - walIndexHdrSize/4 // frames in the first page
	walHashOffset    = walHashPages * 4                 // where the slots start in a page
	walHashMult      = 383                              // wal.c's HASHTABLE_HASH_1
	walFormatVersion = 3007000                          // the WAL header's version field
	shmBigEndCksum   = 13
	shmSzPage        = 14
	shmFrameCksum    = 24
	walHeaderCkptSeq = 12
	walHeaderVersion = 4
	walHeaderPgsz    = 8
	walHeaderSalt1   = 16
	walHeaderCksum   = 24
	walFrameCommit   = 4
	walFrameSalt     = 8
	walFrameCksum    = 16
	walHeaderCksumN  = 24
	walFrameCksumN   = 8
	shmHeaderCopy2   = shmHeaderSize
	walIndexSlotSize = 2
)

// walIndexHeader is the part of the WAL-index header a writer maintains.
type walIndexHeader struct {
	change     uint32
	bigEndian  bool
	pageSize   uint32
	mxFrame    uint32 // frames committed in the WAL
	nPage      uint32 // database size in pages
	frameCksum [2]uint32
	salt       [8]byte // as in the WAL header: big-endian
}

func (h walIndexHeader) salts() (uint32, uint32) {
	return binary.BigEndian.Uint32(h.salt[0:4]), binary.BigEndian.Uint32(h.salt[4:8])
}

// readWALIndexHeader reads the WAL-index header from shm. Both copies must
// agree and carry a valid checksum, as SQLite's readers require.
func readWALIndexHeader(shm *os.File) (walIndexHeader, error) {
	b := make([]byte, 2*shmHeaderSize)
	if n, err := shm.ReadAt(b, 0); n < len(b) {
		return walIndexHeader{}, fmt.Errorf("read WAL index header: short read (%d bytes): %w", n, err)
	}
	h0, h1 := b[:shmHeaderSize], b[shmHeaderSize:]
	le := binary.LittleEndian
	if string(h0) != string(h1) || h0[shmIsInit] != 1 {
		return walIndexHeader{}, errors.New("WAL index header is not initialized or is being changed")
	}
	c := walChecksum(false, [2]uint32{}, h0[:shmHeaderCksumN])
	if c[0] != le.Uint32(h0[shmCksum:]) || c[1] != le.Uint32(h0[shmCksum+4:]) {
		return walIndexHeader{}, errors.New("WAL index header checksum does not match")
	}
	h := walIndexHeader{
		change:     le.Uint32(h0[shmIChange:]),
		bigEndian:  h0[shmBigEndCksum] != 0,
		mxFrame:    le.Uint32(h0[shmMxFrame:]),
		nPage:      le.Uint32(h0[shmNPage:]),
		frameCksum: [2]uint32{le.Uint32(h0[shmFrameCksum:]), le.Uint32(h0[shmFrameCksum+4:])},
	}
	sz := uint32(le.Uint16(h0[shmSzPage:]))
	h.pageSize = sz&0xfe00 | (sz&1)<<16
	copy(h.salt[:], h0[shmSalt1:shmSalt1+8])
	return h, nil
}

// encode returns the 48-byte header with its checksum.
func (h walIndexHeader) encode() []byte {
	b := make([]byte, shmHeaderSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], walIndexVersion)
	le.PutUint32(b[shmIChange:], h.change)
	b[shmIsInit] = 1
	if h.bigEndian {
		b[shmBigEndCksum] = 1
	}
	le.PutUint16(b[shmSzPage:], uint16(h.pageSize&0xff00|(h.pageSize>>16)))
	le.PutUint32(b[shmMxFrame:], h.mxFrame)
	le.PutUint32(b[shmNPage:], h.nPage)
	le.PutUint32(b[shmFrameCksum:], h.frameCksum[0])
	le.PutUint32(b[shmFrameCksum+4:], h.frameCksum[1])
	copy(b[shmSalt1:], h.salt[:])
	c := walChecksum(false, [2]uint32{}, b[:shmHeaderCksumN])
	le.PutUint32(b[shmCksum:], c[0])
	le.PutUint32(b[shmCksum+4:], c[1])
	return b
}

// indexFrames records frames first+1 … first+len(pgnos), holding pages
// pgnos, in the WAL index's hash tables, as a SQLite writer does before it
// publishes them in the header. Entries past first, left by a transaction
// that was rolled back, are cleared first. Readers never look at entries
// past the mxFrame of their snapshot, so they are not disturbed.
func indexFrames(shm *os.File, first uint32, pgnos []uint32) error {
	frame := first + 1
	for i := 0; i < len(pgnos); {
		page := walIndexPageOf(frame)
		zero, base := walIndexPageStart(page)
		buf := make([]byte, walIndexPageSize)
		if _, err := shm.ReadAt(buf, int64(page)*walIndexPageSize); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read WAL index page %d: %w", page, err)
		}
		le := binary.LittleEndian
		// Clear what lies past the committed frames in this page.
		limit := int64(first) - int64(zero)
		for s := 0; s < walHashSlots; s++ {
			off := walHashOffset + s*walIndexSlotSize
			if int64(le.Uint16(buf[off:])) > limit {
				le.PutUint16(buf[off:], 0)
			}
		}
		clear(buf[base+4*int(max(limit, 0)) : walHashOffset])
		for ; i < len(pgnos) && walIndexPageOf(frame) == page; i, frame = i+1, frame+1 {
			idx := frame - zero
			key := (pgnos[i] * walHashMult) & (walHashSlots - 1)
			for n := 0; le.Uint16(buf[walHashOffset+int(key)*walIndexSlotSize:]) != 0; n++ {
				if n > walHashSlots {
					return fmt.Errorf("WAL index page %d: hash table is full", page)
				}
				key = (key + 1) & (walHashSlots - 1)
			}
			le.PutUint32(buf[base+4*int(idx-1):], pgnos[i])
			le.PutUint16(buf[walHashOffset+int(key)*walIndexSlotSize:], uint16(idx))
		}
		// The header and checkpoint info of the first page belong to
		// readers and checkpointers: never write them back.
		if _, err := shm.WriteAt(buf[base:], int64(page)*walIndexPageSize+int64(base)); err != nil {
			return fmt.Errorf("write WAL index page %d: %w", page, err)
		}
	}
	return nil
}

// walIndexPageOf is the index page that records frame (1-based).
func walIndexPageOf(frame uint32) uint32 {
	return (frame + walHashPages - walHashPagesOne - 1) / walHashPages
}

// walIndexPageStart returns the frame number before the first that page
// records, and the offset of its page numbers within the page.
func walIndexPageStart(page uint32) (zero uint32, base int) {
	if page == 0 {
		return 0, walIndexHdrSize
	}
	return walHashPagesOne + (page-1)*walHashPages, 0
}

// publishWALIndexHeader writes h as the WAL-index header, the second copy
// first as SQLite does, so that a reader that sees the copies agree sees
// the whole new header.
func publishWALIndexHeader(shm *os.File, h walIndexHeader) error {
	b := h.encode()
	if _, err := shm.WriteAt(b, shmHeaderCopy2); err != nil {
		return fmt.Errorf("write WAL index header: %w", err)
	}
	if _, err := shm.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write WAL index header: %w", err)
	}
	return nil
}

// spoilWALIndexHeader makes the WAL-index header invalid, so that the next
// connection rebuilds the index from the WAL (SQLite's recovery) instead of
// trusting an index that lacks frames the WAL commits.
func spoilWALIndexHeader(shm *os.File) error {
	if _, err := shm.WriteAt([]byte{0}, shmIsInit); err != nil {
		return fmt.Errorf("invalidate WAL index header: %w", err)
	}
	return nil
}
