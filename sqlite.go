package ferry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// SQLite file-format facts the store relies on.
const (
	sqliteHeaderSize = 100
	sqliteMagic      = "SQLite format 3\x00"

	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682 // checksums over little-endian words
	walMagicBE         = 0x377f0683 // checksums over big-endian words

	journalHeaderMin = 28
)

// journalMagic starts every valid rollback-journal header.
var journalMagic = []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}

// hasSQLiteHeader reports whether the file at path starts with the SQLite
// database header.
func hasSQLiteHeader(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, len(sqliteMagic))
	if _, err := io.ReadFull(f, b); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return string(b) == sqliteMagic, nil
}

// dbHeader is the first 100 bytes of a database file.
type dbHeader []byte

func (h dbHeader) valid() bool {
	return len(h) >= sqliteHeaderSize && string(h[:len(sqliteMagic)]) == sqliteMagic
}

// pageSize decodes the page size; 1 means 65536.
func (h dbHeader) pageSize() uint32 {
	sz := uint32(binary.BigEndian.Uint16(h[16:18]))
	if sz == 1 {
		return 65536
	}
	return sz
}

// walMode reports whether the header marks the database as in WAL mode
// (file format read and write versions 2).
func (h dbHeader) walMode() bool { return h[18] == 2 && h[19] == 2 }

// pageCount returns the in-header database size when SQLite marked it
// valid (the version-valid-for number equals the change counter).
func (h dbHeader) pageCount() (uint32, bool) {
	n := binary.BigEndian.Uint32(h[28:32])
	if n == 0 || binary.BigEndian.Uint32(h[92:96]) != binary.BigEndian.Uint32(h[24:28]) {
		return 0, false
	}
	return n, true
}

// walChecksum continues SQLite's WAL checksum over b, whose length is a
// multiple of 8.
func walChecksum(bigEndian bool, s [2]uint32, b []byte) [2]uint32 {
	s1, s2 := s[0], s[1]
	order := binary.ByteOrder(binary.LittleEndian)
	if bigEndian {
		order = binary.BigEndian
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += order.Uint32(b[i:]) + s2
		s2 += order.Uint32(b[i+4:]) + s1
	}
	return [2]uint32{s1, s2}
}

// walHeader is a decoded WAL file header.
type walHeader struct {
	bigEndian bool
	pageSize  uint32
	salt1     uint32
	salt2     uint32
	cksum     [2]uint32
}

// parseWALHeader decodes and checks a 32-byte WAL header.
func parseWALHeader(b []byte) (walHeader, bool) {
	if len(b) < walHeaderSize {
		return walHeader{}, false
	}
	magic := binary.BigEndian.Uint32(b[0:4])
	if magic != walMagicLE && magic != walMagicBE {
		return walHeader{}, false
	}
	h := walHeader{
		bigEndian: magic == walMagicBE,
		pageSize:  binary.BigEndian.Uint32(b[8:12]),
		salt1:     binary.BigEndian.Uint32(b[16:20]),
		salt2:     binary.BigEndian.Uint32(b[20:24]),
		cksum:     [2]uint32{binary.BigEndian.Uint32(b[24:28]), binary.BigEndian.Uint32(b[28:32])},
	}
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	if h.pageSize < 512 || h.pageSize > 65536 || h.pageSize&(h.pageSize-1) != 0 {
		return walHeader{}, false
	}
	if walChecksum(h.bigEndian, [2]uint32{}, b[:24]) != h.cksum {
		return walHeader{}, false
	}
	return h, true
}

// walFrameValid checks a frame (header and page data) against the header's
// salts and the running checksum, returning the checksum after it.
func walFrameValid(h walHeader, prev [2]uint32, hdr, data []byte) ([2]uint32, bool) {
	if binary.BigEndian.Uint32(hdr[0:4]) == 0 {
		return prev, false
	}
	if binary.BigEndian.Uint32(hdr[8:12]) != h.salt1 || binary.BigEndian.Uint32(hdr[12:16]) != h.salt2 {
		return prev, false
	}
	c := walChecksum(h.bigEndian, prev, hdr[:8])
	c = walChecksum(h.bigEndian, c, data)
	if c[0] != binary.BigEndian.Uint32(hdr[16:20]) || c[1] != binary.BigEndian.Uint32(hdr[20:24]) {
		return prev, false
	}
	return c, true
}

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
