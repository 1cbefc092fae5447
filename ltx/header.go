package ltx

import (
	"encoding/binary"
	"fmt"
	"io"
)

const (
	// Magic is the first 4 bytes of every LTX file.
	Magic = "LTX1"

	// Version is the version of the LTX format this package reads and
	// writes. Version 2 and 3 share the magic, so it is not stored.
	Version = 3
)

// Sizes of the fixed parts of a file.
const (
	HeaderSize     = 100
	PageHeaderSize = 6
	TrailerSize    = 16
	ChecksumSize   = 8

	// TrailerChecksumOffset is where the file checksum starts in the trailer.
	TrailerChecksumOffset = TrailerSize - ChecksumSize
)

// MinPageSize and MaxPageSize bound the page sizes SQLite allows.
const (
	MinPageSize = 512
	MaxPageSize = 65536
)

// Header flags.
const (
	// HeaderFlagNoChecksum marks a file that does not track the database
	// checksum: its pre-apply and post-apply checksums are zero. Litestream
	// writes such files. The file checksum is still present.
	HeaderFlagNoChecksum = uint32(1 << 1)

	// HeaderFlagMask holds every header flag this package understands.
	HeaderFlagMask = HeaderFlagNoChecksum
)

// PageHeader flags.
const (
	// PageHeaderFlagSize marks a frame whose page header is followed by a
	// 4-byte compressed size and an LZ4 block. Frames without it hold an LZ4
	// frame with no size prefix, as older version 3 encoders wrote.
	PageHeaderFlagSize = uint16(1 << 0)

	// PageHeaderFlagMask holds every page header flag this package understands.
	PageHeaderFlagMask = PageHeaderFlagSize
)

// TXID is a transaction ID. The first transaction of a database is 1.
type TXID uint64

// String formats t as 16 lowercase hex digits, as in LTX filenames.
func (t TXID) String() string { return fmt.Sprintf("%016x", uint64(t)) }

// Header is the first frame of an LTX file.
type Header struct {
	Version          int      // format version; always Version once decoded
	Flags            uint32   // HeaderFlag* bits
	PageSize         uint32   // database page size, in bytes
	Commit           uint32   // database size after applying the file, in pages
	MinTXID          TXID     // first transaction in the file
	MaxTXID          TXID     // last transaction in the file
	Timestamp        int64    // milliseconds since the Unix epoch
	PreApplyChecksum Checksum // database checksum before applying the file
	WALOffset        int64    // offset in the source WAL; zero for a rollback journal
	WALSize          int64    // size of the source WAL segment; zero for a journal
	WALSalt1         uint32   // WAL header salt-1; zero for a journal or compaction
	WALSalt2         uint32   // WAL header salt-2; zero for a journal or compaction
	NodeID           uint64   // node that wrote the file; zero if unset
}

// IsSnapshot reports whether the file starts at the first transaction. A
// snapshot holds every page of the database and has no pre-apply checksum.
func (h *Header) IsSnapshot() bool { return h.MinTXID == 1 }

// NoChecksum reports whether the file does not track the database checksum.
func (h *Header) NoChecksum() bool { return h.Flags&HeaderFlagNoChecksum != 0 }

// LockPgno returns the lock page number for the header's page size.
func (h *Header) LockPgno() uint32 { return LockPgno(h.PageSize) }

// Validate returns a *FormatError if h cannot head a valid file. A zero
// Version is taken to mean the current one.
func (h *Header) Validate() error {
	if h.Version != 0 && h.Version != Version {
		return invalidf(ErrInvalidHeader, "unsupported version %d", h.Version)
	}
	if h.Flags&^HeaderFlagMask != 0 {
		return invalidf(ErrInvalidHeaderFlags, "0x%08x", h.Flags)
	}
	if !IsValidPageSize(h.PageSize) {
		return invalidf(ErrInvalidPageSize, "%d", h.PageSize)
	}
	if h.MinTXID == 0 || h.MaxTXID == 0 {
		return invalidf(ErrInvalidTXID, "transaction IDs start at 1: min %d, max %d", h.MinTXID, h.MaxTXID)
	}
	if h.MinTXID > h.MaxTXID {
		return invalidf(ErrInvalidTXID, "min %d is after max %d", h.MinTXID, h.MaxTXID)
	}
	if h.WALOffset < 0 {
		return invalidf(ErrInvalidHeader, "negative WAL offset %d", h.WALOffset)
	}
	if h.WALSize < 0 {
		return invalidf(ErrInvalidHeader, "negative WAL size %d", h.WALSize)
	}
	if (h.WALSalt1 != 0 || h.WALSalt2 != 0) && h.WALOffset == 0 {
		return invalidf(ErrInvalidHeader, "WAL salt set without a WAL offset")
	}
	if h.WALOffset == 0 && h.WALSize != 0 {
		return invalidf(ErrInvalidHeader, "WAL size set without a WAL offset")
	}
	switch {
	case h.IsSnapshot():
		if h.PreApplyChecksum != 0 {
			return invalidf(ErrInvalidHeader, "snapshot has a pre-apply checksum")
		}
	case h.NoChecksum():
		if h.PreApplyChecksum != 0 {
			return invalidf(ErrInvalidHeader, "pre-apply checksum set on a file that does not track checksums")
		}
	default:
		if h.PreApplyChecksum == 0 {
			return invalidf(ErrInvalidHeader, "pre-apply checksum missing")
		}
		if h.PreApplyChecksum&ChecksumFlag == 0 {
			return invalidf(ErrInvalidHeader, "pre-apply checksum %s lacks the checksum flag", h.PreApplyChecksum)
		}
	}
	return nil
}

// MarshalBinary encodes h into its 100-byte form.
func (h *Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	h.put(b)
	return b, nil
}

// put writes h into b, which must hold HeaderSize bytes.
func (h *Header) put(b []byte) {
	copy(b[0:4], Magic)
	binary.BigEndian.PutUint32(b[4:], h.Flags)
	binary.BigEndian.PutUint32(b[8:], h.PageSize)
	binary.BigEndian.PutUint32(b[12:], h.Commit)
	binary.BigEndian.PutUint64(b[16:], uint64(h.MinTXID))
	binary.BigEndian.PutUint64(b[24:], uint64(h.MaxTXID))
	binary.BigEndian.PutUint64(b[32:], uint64(h.Timestamp))
	binary.BigEndian.PutUint64(b[40:], uint64(h.PreApplyChecksum))
	binary.BigEndian.PutUint64(b[48:], uint64(h.WALOffset))
	binary.BigEndian.PutUint64(b[56:], uint64(h.WALSize))
	binary.BigEndian.PutUint32(b[64:], h.WALSalt1)
	binary.BigEndian.PutUint32(b[68:], h.WALSalt2)
	binary.BigEndian.PutUint64(b[72:], h.NodeID)
	clear(b[80:HeaderSize])
}

// UnmarshalBinary decodes h from b. It checks the magic but not the fields;
// call Validate for that.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderSize {
		return io.ErrShortBuffer
	}
	if string(b[0:4]) != Magic {
		return invalidf(ErrInvalidMagic, "got %q", b[0:4])
	}
	*h = Header{
		Version:          Version,
		Flags:            binary.BigEndian.Uint32(b[4:]),
		PageSize:         binary.BigEndian.Uint32(b[8:]),
		Commit:           binary.BigEndian.Uint32(b[12:]),
		MinTXID:          TXID(binary.BigEndian.Uint64(b[16:])),
		MaxTXID:          TXID(binary.BigEndian.Uint64(b[24:])),
		Timestamp:        int64(binary.BigEndian.Uint64(b[32:])),
		PreApplyChecksum: Checksum(binary.BigEndian.Uint64(b[40:])),
		WALOffset:        int64(binary.BigEndian.Uint64(b[48:])),
		WALSize:          int64(binary.BigEndian.Uint64(b[56:])),
		WALSalt1:         binary.BigEndian.Uint32(b[64:]),
		WALSalt2:         binary.BigEndian.Uint32(b[68:]),
		NodeID:           binary.BigEndian.Uint64(b[72:]),
	}
	return nil
}

// IsValidPageSize reports whether sz is a power of two from 512 to 65536.
func IsValidPageSize(sz uint32) bool {
	return sz >= MinPageSize && sz <= MaxPageSize && sz&(sz-1) == 0
}

// PendingByte is the file offset of SQLite's lock byte. The page holding it
// is never written by SQLite and never stored in an LTX file.
const PendingByte = 0x40000000

// LockPgno returns the number of the page that holds the pending byte for a
// database with the given page size.
func LockPgno(pageSize uint32) uint32 {
	if pageSize == 0 {
		return 0
	}
	return uint32(PendingByte/int64(pageSize)) + 1
}

// PageHeader precedes each page in an LTX file.
type PageHeader struct {
	Pgno  uint32 // one-based page number
	Flags uint16 // PageHeaderFlag* bits
}

// IsZero reports whether h is the zero header that ends the page block.
func (h *PageHeader) IsZero() bool { return *h == PageHeader{} }

// Validate returns a *FormatError if h is not a valid page header.
func (h *PageHeader) Validate() error {
	if h.Pgno == 0 {
		return invalidf(ErrInvalidPageHeader, "page number 0")
	}
	if h.Flags&^PageHeaderFlagMask != 0 {
		return invalidf(ErrInvalidPageHeader, "page %d: unknown flags 0x%04x", h.Pgno, h.Flags)
	}
	return nil
}

// MarshalBinary encodes h into its 6-byte form.
func (h *PageHeader) MarshalBinary() ([]byte, error) {
	b := make([]byte, PageHeaderSize)
	binary.BigEndian.PutUint32(b[0:], h.Pgno)
	binary.BigEndian.PutUint16(b[4:], h.Flags)
	return b, nil
}

// UnmarshalBinary decodes h from b.
func (h *PageHeader) UnmarshalBinary(b []byte) error {
	if len(b) < PageHeaderSize {
		return io.ErrShortBuffer
	}
	h.Pgno = binary.BigEndian.Uint32(b[0:])
	h.Flags = binary.BigEndian.Uint16(b[4:])
	return nil
}

// Trailer is the last frame of an LTX file.
type Trailer struct {
	PostApplyChecksum Checksum // database checksum after applying the file
	FileChecksum      Checksum // CRC-64 of the file's logical content
}

// Validate returns a *FormatError if t cannot end a file with header h.
func (t *Trailer) Validate(h Header) error {
	if h.NoChecksum() {
		if t.PostApplyChecksum != 0 {
			return invalidf(ErrInvalidTrailer, "post-apply checksum set on a file that does not track checksums")
		}
	} else if t.PostApplyChecksum&ChecksumFlag == 0 {
		return invalidf(ErrInvalidTrailer, "post-apply checksum %s lacks the checksum flag", t.PostApplyChecksum)
	}
	if t.FileChecksum&ChecksumFlag == 0 {
		return invalidf(ErrInvalidTrailer, "file checksum %s lacks the checksum flag", t.FileChecksum)
	}
	return nil
}

// MarshalBinary encodes t into its 16-byte form.
func (t *Trailer) MarshalBinary() ([]byte, error) {
	b := make([]byte, TrailerSize)
	binary.BigEndian.PutUint64(b[0:], uint64(t.PostApplyChecksum))
	binary.BigEndian.PutUint64(b[8:], uint64(t.FileChecksum))
	return b, nil
}

// UnmarshalBinary decodes t from b.
func (t *Trailer) UnmarshalBinary(b []byte) error {
	if len(b) < TrailerSize {
		return io.ErrShortBuffer
	}
	t.PostApplyChecksum = Checksum(binary.BigEndian.Uint64(b[0:]))
	t.FileChecksum = Checksum(binary.BigEndian.Uint64(b[8:]))
	return nil
}
