package ltx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"

	"github.com/pierrec/lz4/v4"
)

// encoder and decoder states.
type codecState int

const (
	stateHeader codecState = iota
	statePage
	stateClose
	stateClosed
	stateFailed
)

// Encoder writes one LTX file to an io.Writer. Call EncodeHeader, then
// EncodePage for each page in ascending page order, then
// SetPostApplyChecksum and Close. It holds one compressed page and the page
// index (a few bytes per page) in memory, never the whole file.
//
// After any write error the encoder refuses further calls: the output is
// incomplete and must be discarded.
type Encoder struct {
	w     io.Writer
	state codecState
	err   error // first write error, returned by every later call

	header  Header
	trailer Trailer
	crc     uint64 // running CRC-64 of the logical content
	n       int64  // bytes written

	index    []byte // varint (pgno, offset, size) records, as written on Close
	prevPgno uint32
	pageN    int
	lockPgno uint32

	// Snapshots also compute the database checksum as they go, so Close can
	// fill in or verify the post-apply checksum.
	dbChecksum   Checksum
	postApplySet bool
	compressor   lz4.Compressor
	frame        []byte // page header, size prefix and compressed page
}

// NewEncoder returns an Encoder that writes to w. The error is always nil;
// it is returned for compatibility with superfly/ltx.
func NewEncoder(w io.Writer) (*Encoder, error) {
	return &Encoder{w: w}, nil
}

// N returns the number of bytes written so far.
func (enc *Encoder) N() int64 { return enc.n }

// PageN returns the number of pages encoded so far.
func (enc *Encoder) PageN() int { return enc.pageN }

// Header returns the header passed to EncodeHeader.
func (enc *Encoder) Header() Header { return enc.header }

// Trailer returns the trailer. The file checksum is set by Close.
func (enc *Encoder) Trailer() Trailer { return enc.trailer }

// SetPostApplyChecksum sets the database checksum after applying the file.
// Call it before Close. Files with HeaderFlagNoChecksum take zero. For a
// snapshot it may be omitted, and Close uses the checksum of the pages
// encoded; if set, Close verifies it against them.
func (enc *Encoder) SetPostApplyChecksum(chksum Checksum) {
	enc.trailer.PostApplyChecksum = chksum
	enc.postApplySet = true
}

// EncodeHeader validates hdr and writes it.
func (enc *Encoder) EncodeHeader(hdr Header) error {
	if err := enc.checkState(stateHeader); err != nil {
		return err
	}
	if err := hdr.Validate(); err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	hdr.Version = Version
	enc.header = hdr
	enc.lockPgno = LockPgno(hdr.PageSize)
	enc.dbChecksum = ChecksumFlag
	enc.frame = make([]byte, PageHeaderSize+4+lz4.CompressBlockBound(int(hdr.PageSize)))

	b := enc.frame[:HeaderSize]
	hdr.put(b)
	enc.crc = crc64.Update(0, crcTable, b)
	if err := enc.write(b); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	enc.state = statePage
	return nil
}

// EncodePage compresses data and writes it as page hdr.Pgno. Pages must come
// in ascending order, must not include the lock page or exceed the commit
// size, and a snapshot must hold every page from 1 to the commit size.
// hdr.Flags is ignored: frames are always written as size-prefixed LZ4
// blocks.
func (enc *Encoder) EncodePage(hdr PageHeader, data []byte) error {
	if err := enc.checkState(statePage); err != nil {
		return err
	}
	hdr.Flags = PageHeaderFlagSize
	if err := enc.checkPage(hdr.Pgno, data); err != nil {
		return err
	}

	n, err := enc.compressor.CompressBlock(data, enc.frame[PageHeaderSize+4:])
	if err != nil {
		return fmt.Errorf("compress page %d: %w", hdr.Pgno, err)
	}
	if n == 0 {
		// The block was incompressible. An LZ4 block holding only literals
		// is still valid, so write one rather than a raw page.
		n = literalBlock(enc.frame[PageHeaderSize+4:], data)
	}
	frame := enc.frame[:PageHeaderSize+4+n]
	binary.BigEndian.PutUint32(frame[0:], hdr.Pgno)
	binary.BigEndian.PutUint16(frame[4:], hdr.Flags)
	binary.BigEndian.PutUint32(frame[6:], uint32(n))

	// The file checksum covers the page header, the size prefix and the
	// uncompressed page, not the compressed bytes.
	enc.crc = crc64.Update(enc.crc, crcTable, frame[:PageHeaderSize+4])
	enc.crc = crc64.Update(enc.crc, crcTable, data)

	offset := enc.n
	if err := enc.write(frame); err != nil {
		return fmt.Errorf("write page %d: %w", hdr.Pgno, err)
	}
	enc.index = appendIndexRecord(enc.index, hdr.Pgno, offset, int64(len(frame)))
	enc.prevPgno = hdr.Pgno
	enc.pageN++
	if enc.header.IsSnapshot() {
		enc.dbChecksum = combineChecksums(enc.dbChecksum, ChecksumPage(hdr.Pgno, data))
	}
	return nil
}

// checkPage validates the next page number and buffer against the header
// and the pages already written.
func (enc *Encoder) checkPage(pgno uint32, data []byte) error {
	h := &enc.header
	switch {
	case uint32(len(data)) != h.PageSize:
		return fmt.Errorf("encode page %d: buffer is %d bytes, page size is %d", pgno, len(data), h.PageSize)
	case pgno == 0:
		return invalidf(ErrInvalidPageHeader, "page number 0")
	case pgno > h.Commit:
		return invalidf(ErrPageOutOfBounds, "page %d, commit %d", pgno, h.Commit)
	case pgno == enc.lockPgno:
		return invalidf(ErrLockPage, "page %d", pgno)
	case pgno <= enc.prevPgno:
		return invalidf(ErrPageOutOfOrder, "page %d after page %d", pgno, enc.prevPgno)
	}
	if h.IsSnapshot() {
		if want := nextSnapshotPgno(enc.prevPgno, enc.lockPgno); pgno != want {
			return invalidf(ErrSnapshotIncomplete, "page %d follows page %d, want page %d", pgno, enc.prevPgno, want)
		}
	}
	return nil
}

// nextSnapshotPgno returns the page a snapshot must hold after prev.
func nextSnapshotPgno(prev, lockPgno uint32) uint32 {
	if prev+1 == lockPgno {
		return prev + 2
	}
	return prev + 1
}

// lastSnapshotPgno returns the last page a snapshot of commit pages holds.
func lastSnapshotPgno(commit, lockPgno uint32) uint32 {
	if commit == lockPgno {
		return commit - 1
	}
	return commit
}

// Close ends the page block and writes the page index and the trailer.
func (enc *Encoder) Close() error {
	if enc.state == stateClosed {
		return nil
	}
	if err := enc.checkState(statePage); err != nil {
		return err
	}
	h := &enc.header
	if h.IsSnapshot() {
		if last := lastSnapshotPgno(h.Commit, enc.lockPgno); enc.prevPgno != last {
			return invalidf(ErrSnapshotIncomplete, "last page %d, commit %d", enc.prevPgno, h.Commit)
		}
		if !h.NoChecksum() {
			if !enc.postApplySet {
				enc.trailer.PostApplyChecksum = enc.dbChecksum
			} else if enc.trailer.PostApplyChecksum != enc.dbChecksum {
				return invalidf(ErrPostApplyMismatch, "snapshot pages sum to %s, post-apply checksum set to %s", enc.dbChecksum, enc.trailer.PostApplyChecksum)
			}
		}
	}
	if h.Commit == 0 && !h.NoChecksum() && enc.trailer.PostApplyChecksum != ChecksumFlag {
		return invalidf(ErrInvalidTrailer, "post-apply checksum of an empty database must be %s", ChecksumFlag)
	}
	if h.NoChecksum() && enc.trailer.PostApplyChecksum != 0 {
		return invalidf(ErrInvalidTrailer, "post-apply checksum set on a file that does not track checksums")
	}
	if !h.NoChecksum() && enc.trailer.PostApplyChecksum&ChecksumFlag == 0 {
		return invalidf(ErrInvalidTrailer, "post-apply checksum %s lacks the checksum flag (call SetPostApplyChecksum)", enc.trailer.PostApplyChecksum)
	}

	// Zero page header, index records, end marker, index size, trailer.
	tail := make([]byte, 0, PageHeaderSize+len(enc.index)+1+8+TrailerSize)
	tail = append(tail, make([]byte, PageHeaderSize)...)
	tail = append(tail, enc.index...)
	tail = append(tail, 0)
	tail = binary.BigEndian.AppendUint64(tail, uint64(len(enc.index)+1))
	tail = binary.BigEndian.AppendUint64(tail, uint64(enc.trailer.PostApplyChecksum))
	enc.crc = crc64.Update(enc.crc, crcTable, tail)
	enc.trailer.FileChecksum = ChecksumFlag | Checksum(enc.crc)
	tail = binary.BigEndian.AppendUint64(tail, uint64(enc.trailer.FileChecksum))
	if err := enc.write(tail); err != nil {
		return fmt.Errorf("write page index and trailer: %w", err)
	}
	enc.index = nil
	enc.frame = nil
	enc.state = stateClosed
	return nil
}

// checkState returns an error unless the encoder is in state want.
func (enc *Encoder) checkState(want codecState) error {
	switch enc.state {
	case want:
		return nil
	case stateClosed:
		return ErrEncoderClosed
	case stateFailed:
		return fmt.Errorf("ltx encoder failed earlier: %w", enc.err)
	case stateHeader:
		return errors.New("ltx encoder: header not written yet")
	default:
		return errors.New("ltx encoder: header already written")
	}
}

// write writes b in full, failing the encoder on error.
func (enc *Encoder) write(b []byte) error {
	n, err := enc.w.Write(b)
	enc.n += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		enc.state = stateFailed
		enc.err = err
	}
	return err
}

// literalBlock writes src into dst as an LZ4 block holding a single literal
// run and returns its length. dst must hold lz4.CompressBlockBound(len(src)).
func literalBlock(dst, src []byte) int {
	// Token: literal length in the high nibble; 15 means more length bytes.
	n := len(src)
	i := 0
	if n < 15 {
		dst[i] = byte(n << 4)
		i++
	} else {
		dst[i] = 0xF0
		i++
		for rem := n - 15; ; rem -= 255 {
			if rem >= 255 {
				dst[i] = 255
				i++
				continue
			}
			dst[i] = byte(rem)
			i++
			break
		}
	}
	i += copy(dst[i:], src)
	return i
}
