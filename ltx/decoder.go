package ltx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"math"

	"github.com/pierrec/lz4/v4"
)

// lz4FrameFooterSize is the end mark plus content checksum that ends each
// LZ4 frame written by older version 3 encoders.
const lz4FrameFooterSize = 8

// Decoder reads one LTX file from an io.Reader. Call DecodeHeader, then
// DecodePage until it returns io.EOF, then Close, which reads the page index
// and trailer and verifies them. Only after Close returns nil is the file
// known to be intact. It holds one page in memory, and checks the page index
// against a running CRC of the frames rather than a copy of them.
type Decoder struct {
	r     *bufio.Reader
	state codecState
	err   error // first decode error, returned by every later call

	header  Header
	trailer Trailer
	crc     uint64 // running CRC-64 of the logical content
	n       int64  // bytes consumed

	pageN    int
	indexCRC uint64 // CRC-64 of the index records the frames read call for
	indexBuf [3 * binary.MaxVarintLen64]byte
	prevPgno uint32
	lockPgno uint32

	dbChecksum Checksum // snapshots only: checksum of the pages decoded

	buf     []byte // compressed page
	scratch [PageHeaderSize + 4]byte
	lr      io.LimitedReader
	zr      *lz4.Reader // for older frames; created on first use
}

// appendIndexRecord appends the page index record for one frame.
func appendIndexRecord(b []byte, pgno uint32, offset, size int64) []byte {
	b = binary.AppendUvarint(b, uint64(pgno))
	b = binary.AppendUvarint(b, uint64(offset))
	return binary.AppendUvarint(b, uint64(size))
}

// indexEntry locates one page frame in a file.
type indexEntry struct {
	pgno   uint32
	offset int64
	size   int64
}

// NewDecoder returns a Decoder that reads from r. Close requires r to end
// where the file ends, so when files follow one another in a stream, give
// each its own reader (for example with io.LimitReader). Reads go through a
// 64 KiB buffer.
func NewDecoder(r io.Reader) *Decoder {
	return newDecoderSize(r, 64<<10)
}

// newDecoderSize returns a Decoder with a read buffer of size bytes.
func newDecoderSize(r io.Reader, size int) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, size)}
}

// N returns the number of bytes read so far.
func (dec *Decoder) N() int64 { return dec.n }

// PageN returns the number of pages decoded so far.
func (dec *Decoder) PageN() int { return dec.pageN }

// Header returns the header read by DecodeHeader.
func (dec *Decoder) Header() Header { return dec.header }

// Trailer returns the trailer read by Close.
func (dec *Decoder) Trailer() Trailer { return dec.trailer }

// DecodeHeader reads and validates the header.
func (dec *Decoder) DecodeHeader() error {
	if err := dec.checkState(stateHeader); err != nil {
		return err
	}
	b := make([]byte, HeaderSize)
	if err := dec.readFull(b, "header"); err != nil {
		return dec.fail(err)
	}
	if err := dec.header.UnmarshalBinary(b); err != nil {
		return dec.fail(err)
	}
	if err := dec.header.Validate(); err != nil {
		return dec.fail(err)
	}
	dec.crc = crc64.Update(0, crcTable, b)
	dec.lockPgno = LockPgno(dec.header.PageSize)
	dec.dbChecksum = ChecksumFlag
	dec.state = statePage
	return nil
}

// DecodePage reads the next page into hdr and data, which must be exactly
// one page long. It returns io.EOF after the last page.
func (dec *Decoder) DecodePage(hdr *PageHeader, data []byte) error {
	switch dec.state {
	case stateClose:
		return io.EOF
	case statePage:
	default:
		return dec.checkState(statePage)
	}
	if uint32(len(data)) != dec.header.PageSize {
		return fmt.Errorf("decode page: buffer is %d bytes, page size is %d", len(data), dec.header.PageSize)
	}

	offset := dec.n
	b := dec.scratch[:]
	if err := dec.readFull(b[:PageHeaderSize], "page header"); err != nil {
		return dec.fail(err)
	}
	var ph PageHeader
	_ = ph.UnmarshalBinary(b)
	if ph.IsZero() {
		if err := dec.endPages(); err != nil {
			return dec.fail(err)
		}
		dec.crc = crc64.Update(dec.crc, crcTable, b[:PageHeaderSize])
		dec.state = stateClose
		return io.EOF
	}
	if err := dec.checkPgno(ph); err != nil {
		return dec.fail(err)
	}

	hashed := b[:PageHeaderSize]
	if ph.Flags&PageHeaderFlagSize != 0 {
		if err := dec.readFull(b[PageHeaderSize:], "page size prefix"); err != nil {
			return dec.fail(err)
		}
		hashed = b
		if err := dec.readBlock(ph.Pgno, binary.BigEndian.Uint32(b[PageHeaderSize:]), data); err != nil {
			return dec.fail(err)
		}
	} else if err := dec.readFrame(ph.Pgno, data); err != nil {
		return dec.fail(err)
	}

	dec.crc = crc64.Update(dec.crc, crcTable, hashed)
	dec.crc = crc64.Update(dec.crc, crcTable, data)
	// Rather than keep every frame's position for Close to compare with the
	// index, keep a CRC of the index records they call for.
	dec.indexCRC = crc64.Update(dec.indexCRC, crcTable, appendIndexRecord(dec.indexBuf[:0], ph.Pgno, offset, dec.n-offset))
	dec.pageN++
	dec.prevPgno = ph.Pgno
	if dec.header.IsSnapshot() {
		dec.dbChecksum = combineChecksums(dec.dbChecksum, ChecksumPage(ph.Pgno, data))
	}
	*hdr = ph
	return nil
}

// checkPgno validates a page header against the header and earlier pages.
func (dec *Decoder) checkPgno(ph PageHeader) error {
	if err := ph.Validate(); err != nil {
		return err
	}
	h := &dec.header
	switch {
	case ph.Pgno > h.Commit:
		return invalidf(ErrPageOutOfBounds, "page %d, commit %d", ph.Pgno, h.Commit)
	case ph.Pgno == dec.lockPgno:
		return invalidf(ErrLockPage, "page %d", ph.Pgno)
	case ph.Pgno <= dec.prevPgno:
		return invalidf(ErrPageOutOfOrder, "page %d after page %d", ph.Pgno, dec.prevPgno)
	}
	if h.IsSnapshot() {
		if want := nextSnapshotPgno(dec.prevPgno, dec.lockPgno); ph.Pgno != want {
			return invalidf(ErrSnapshotIncomplete, "page %d follows page %d, want page %d", ph.Pgno, dec.prevPgno, want)
		}
	}
	return nil
}

// endPages checks the page block as a whole once its end is reached.
func (dec *Decoder) endPages() error {
	h := &dec.header
	if h.IsSnapshot() {
		if last := lastSnapshotPgno(h.Commit, dec.lockPgno); dec.prevPgno != last {
			return invalidf(ErrSnapshotIncomplete, "last page %d, commit %d", dec.prevPgno, h.Commit)
		}
	}
	return nil
}

// readBlock reads a size-prefixed LZ4 block and decompresses it into data.
func (dec *Decoder) readBlock(pgno, size uint32, data []byte) error {
	if size == 0 || int64(size) > int64(lz4.CompressBlockBound(len(data))) {
		return invalidf(ErrCorruptPage, "page %d: compressed size %d out of range for page size %d", pgno, size, len(data))
	}
	if cap(dec.buf) < int(size) {
		dec.buf = make([]byte, lz4.CompressBlockBound(len(data)))
	}
	buf := dec.buf[:size]
	if err := dec.readFull(buf, "page data"); err != nil {
		return err
	}
	n, err := lz4.UncompressBlock(buf, data)
	if err != nil {
		return invalidf(ErrCorruptPage, "page %d: %v", pgno, err)
	}
	if n != len(data) {
		return invalidf(ErrCorruptPage, "page %d: decompressed to %d bytes, page size is %d", pgno, n, len(data))
	}
	return nil
}

// readFrame reads a page stored as an LZ4 frame with no size prefix, as
// older version 3 encoders wrote. The LZ4 reader looks past the end of a
// frame for another one, so reads are limited to keep it from consuming the
// next page header.
func (dec *Decoder) readFrame(pgno uint32, data []byte) error {
	dec.lr = io.LimitedReader{R: dec.r, N: math.MaxInt64}
	if dec.zr == nil {
		dec.zr = lz4.NewReader(&dec.lr)
	} else {
		dec.zr.Reset(&dec.lr)
	}
	_, err := io.ReadFull(dec.zr, data)
	dec.n += math.MaxInt64 - dec.lr.N
	if err == nil {
		// Only the frame footer may remain.
		dec.lr.N = lz4FrameFooterSize
		var one [1]byte
		if _, err2 := io.ReadFull(dec.zr, one[:]); err2 != io.EOF {
			err = fmt.Errorf("frame holds more than one page")
		}
		dec.n += lz4FrameFooterSize - dec.lr.N
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return invalidf(ErrTruncated, "page %d: LZ4 frame ends early", pgno)
		}
		return invalidf(ErrCorruptPage, "page %d: LZ4 frame: %v", pgno, err)
	}
	return nil
}

// Close reads the page index and the trailer and verifies the index against
// the frames read, the file checksum and, for snapshots, the post-apply
// checksum. It fails unless every page has been read.
func (dec *Decoder) Close() error {
	if dec.state == stateClosed {
		return nil
	}
	if err := dec.checkState(stateClose); err != nil {
		return err
	}
	if err := dec.readIndex(); err != nil {
		return dec.fail(err)
	}

	b := make([]byte, TrailerSize)
	if err := dec.readFull(b, "trailer"); err != nil {
		return dec.fail(err)
	}
	_ = dec.trailer.UnmarshalBinary(b)
	if err := dec.trailer.Validate(dec.header); err != nil {
		return dec.fail(err)
	}
	if _, err := dec.r.ReadByte(); err == nil {
		return dec.fail(invalidf(ErrTrailingData, "after byte %d", dec.n))
	} else if err != io.EOF {
		return dec.fail(fmt.Errorf("read after trailer: %w", err))
	}

	dec.crc = crc64.Update(dec.crc, crcTable, b[:TrailerChecksumOffset])
	if got := ChecksumFlag | Checksum(dec.crc); got != dec.trailer.FileChecksum {
		return dec.fail(invalidf(ErrChecksumMismatch, "trailer says %s, content sums to %s", dec.trailer.FileChecksum, got))
	}
	h := &dec.header
	if h.IsSnapshot() && !h.NoChecksum() && dec.trailer.PostApplyChecksum != dec.dbChecksum {
		return dec.fail(invalidf(ErrPostApplyMismatch, "snapshot trailer says %s, pages sum to %s", dec.trailer.PostApplyChecksum, dec.dbChecksum))
	}
	if h.Commit == 0 && !h.NoChecksum() && dec.trailer.PostApplyChecksum != ChecksumFlag {
		return dec.fail(invalidf(ErrPostApplyMismatch, "empty database must have post-apply checksum %s, trailer says %s", ChecksumFlag, dec.trailer.PostApplyChecksum))
	}
	dec.state = stateClosed
	return nil
}

// readIndex reads the page index and checks that it names exactly the
// frames read, at the offsets and sizes they were read from.
func (dec *Decoder) readIndex() error {
	start := dec.n
	var crc uint64
	var prev uint64
	for i := 0; ; i++ {
		pgno, err := dec.readUvarint("page index")
		if err != nil {
			return err
		}
		if pgno == 0 {
			if i != dec.pageN {
				return invalidf(ErrIndexMismatch, "index has %d entries, file has %d pages", i, dec.pageN)
			}
			break
		}
		if i >= dec.pageN {
			return invalidf(ErrIndexMismatch, "index has more entries than the %d pages in the file", dec.pageN)
		}
		if pgno <= prev || pgno > uint64(dec.header.Commit) {
			return invalidf(ErrIndexMismatch, "entry %d names page %d after page %d (commit %d)", i, pgno, prev, dec.header.Commit)
		}
		prev = pgno
		offset, err := dec.readUvarint("page index")
		if err != nil {
			return err
		}
		size, err := dec.readUvarint("page index")
		if err != nil {
			return err
		}
		if offset > math.MaxInt64 || size > math.MaxInt64 {
			return invalidf(ErrIndexMismatch, "entry %d: offset %d or size %d out of range", i, offset, size)
		}
		crc = crc64.Update(crc, crcTable, appendIndexRecord(dec.indexBuf[:0], uint32(pgno), int64(offset), int64(size)))
	}
	if crc != dec.indexCRC {
		return invalidf(ErrIndexMismatch, "entries do not give the page numbers, offsets and sizes of the frames")
	}
	indexSize := dec.n - start
	var b [8]byte
	if err := dec.readFull(b[:], "page index size"); err != nil {
		return err
	}
	dec.crc = crc64.Update(dec.crc, crcTable, b[:])
	if got := binary.BigEndian.Uint64(b[:]); got != uint64(indexSize) {
		return invalidf(ErrIndexMismatch, "index size field says %d bytes, index is %d bytes", got, indexSize)
	}
	return nil
}

// readUvarint reads one varint, adding its bytes to the file checksum.
func (dec *Decoder) readUvarint(what string) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := dec.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				return 0, invalidf(ErrTruncated, "in %s at byte %d", what, dec.n)
			}
			return 0, fmt.Errorf("read %s: %w", what, err)
		}
		dec.n++
		dec.crc = crc64.Update(dec.crc, crcTable, []byte{c})
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, invalidf(ErrIndexMismatch, "varint overflows 64 bits in %s at byte %d", what, dec.n)
}

// readFull fills b from the input, reporting a short read as ErrTruncated.
func (dec *Decoder) readFull(b []byte, what string) error {
	n, err := io.ReadFull(dec.r, b)
	dec.n += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return invalidf(ErrTruncated, "in %s at byte %d", what, dec.n)
	} else if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// fail records err so every later call returns it.
func (dec *Decoder) fail(err error) error {
	dec.state = stateFailed
	dec.err = err
	return err
}

// checkState returns an error unless the decoder is in state want.
func (dec *Decoder) checkState(want codecState) error {
	switch dec.state {
	case want:
		return nil
	case stateClosed:
		return ErrDecoderClosed
	case stateFailed:
		return dec.err
	case stateHeader:
		return errors.New("ltx decoder: header not read yet")
	case statePage:
		return errors.New("ltx decoder: pages not all read yet")
	default:
		return errors.New("ltx decoder: pages already read")
	}
}

// Verify reads the whole file, discarding pages, and verifies it. Header and
// Trailer return its header and trailer afterwards.
func (dec *Decoder) Verify() error {
	if err := dec.DecodeHeader(); err != nil {
		return fmt.Errorf("decode header: %w", err)
	}
	var ph PageHeader
	data := make([]byte, dec.header.PageSize)
	for {
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("decode page: %w", err)
		}
	}
	if err := dec.Close(); err != nil {
		return fmt.Errorf("close decoder: %w", err)
	}
	return nil
}
