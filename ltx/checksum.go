package ltx

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"strconv"
)

// Checksum is a CRC-64 (ISO) checksum with bit 63 (ChecksumFlag) set, so
// that a valid checksum is never zero.
type Checksum uint64

// ChecksumFlag is set on every checksum so that zero means "none".
const ChecksumFlag Checksum = 1 << 63

// String formats c as 16 lowercase hex digits.
func (c Checksum) String() string { return fmt.Sprintf("%016x", uint64(c)) }

// ParseChecksum parses 16 hex digits into a checksum.
func ParseChecksum(s string) (Checksum, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("invalid checksum %q: want 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid checksum %q: want 16 hex digits", s)
	}
	return Checksum(v), nil
}

// crcTable is the CRC-64 ISO table. The standard library caches it and
// uses its slicing-by-8 implementation for this polynomial.
var crcTable = crc64.MakeTable(crc64.ISO)

// ChecksumPage returns the checksum of one database page: the CRC-64 of the
// big-endian page number followed by the page data, with ChecksumFlag set.
func ChecksumPage(pgno uint32, data []byte) Checksum {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	crc := crc64.Update(0, crcTable, b[:])
	return ChecksumFlag | Checksum(crc64.Update(crc, crcTable, data))
}

// combineChecksums folds a page checksum into a rolling database checksum.
// XOR makes the order irrelevant and lets a page be removed by folding it in
// again; the flag keeps the result non-zero.
func combineChecksums(db, page Checksum) Checksum {
	return ChecksumFlag | (db ^ page)
}

// ChecksumDatabase computes the rolling checksum of the first commit pages
// of a database read from r: the XOR of ChecksumPage over every page except
// the lock page, with ChecksumFlag set. It returns ChecksumFlag for an empty
// database (commit 0), which is what an LTX file records after a database is
// truncated to nothing. It returns an error if r ends before commit pages.
func ChecksumDatabase(r io.Reader, pageSize uint32, commit uint32) (Checksum, error) {
	if !IsValidPageSize(pageSize) {
		return 0, invalidf(ErrInvalidPageSize, "%d", pageSize)
	}
	r = bufferedReader(r)
	lockPgno := LockPgno(pageSize)
	buf := make([]byte, pageSize)
	chksum := ChecksumFlag
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read database page %d of %d: %w", pgno, commit, err)
		}
		if pgno != lockPgno {
			chksum = combineChecksums(chksum, ChecksumPage(pgno, buf))
		}
	}
	return chksum, nil
}

// ChecksumDatabaseFile computes the rolling checksum of a whole database
// read through r, whose size is size bytes. The size must be a multiple of
// the page size.
func ChecksumDatabaseFile(r io.ReaderAt, size int64, pageSize uint32) (Checksum, error) {
	if !IsValidPageSize(pageSize) {
		return 0, invalidf(ErrInvalidPageSize, "%d", pageSize)
	}
	if size%int64(pageSize) != 0 {
		return 0, fmt.Errorf("database size %d is not a multiple of page size %d", size, pageSize)
	}
	commit := size / int64(pageSize)
	if commit > int64(^uint32(0)) {
		return 0, fmt.Errorf("database size %d has too many pages", size)
	}
	return ChecksumDatabase(io.NewSectionReader(r, 0, size), pageSize, uint32(commit))
}

// bufferedReader wraps r in a large buffer unless it is in memory already,
// so that reading a database page by page costs few system calls.
func bufferedReader(r io.Reader) io.Reader {
	switch r.(type) {
	case *bytes.Reader, *bytes.Buffer, *bufio.Reader:
		return r
	}
	return bufio.NewReaderSize(r, 1<<20)
}
