package ltx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/pierrec/lz4/v4"
)

// PageReader reads single pages from an LTX file by way of its page index,
// without reading the rest of the file. NewPageReader checks the header,
// trailer and index structure; each ReadPage checks its frame. The file
// checksum covers the whole file, so only Verify checks it.
//
// A PageReader is safe for concurrent use if its io.ReaderAt is.
type PageReader struct {
	r       io.ReaderAt
	size    int64
	header  Header
	trailer Trailer
	index   []indexEntry
}

// NewPageReader opens the LTX file of size bytes read through r.
func NewPageReader(r io.ReaderAt, size int64) (*PageReader, error) {
	const minSize = HeaderSize + PageHeaderSize + 1 + 8 + TrailerSize
	if size < minSize {
		return nil, invalidf(ErrTruncated, "file is %d bytes, the smallest LTX file is %d", size, minSize)
	}
	pr := &PageReader{r: r, size: size}

	b := make([]byte, HeaderSize)
	if err := readAt(r, b, 0, "header"); err != nil {
		return nil, err
	}
	if err := pr.header.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	if err := pr.header.Validate(); err != nil {
		return nil, err
	}

	tail := make([]byte, 8+TrailerSize)
	if err := readAt(r, tail, size-int64(len(tail)), "trailer"); err != nil {
		return nil, err
	}
	_ = pr.trailer.UnmarshalBinary(tail[8:])
	if err := pr.trailer.Validate(pr.header); err != nil {
		return nil, err
	}

	// The index sits between the zero page header and its size field.
	indexEnd := size - int64(len(tail))
	indexSize := binary.BigEndian.Uint64(tail[:8])
	if indexSize == 0 || indexSize > uint64(indexEnd-HeaderSize-PageHeaderSize) {
		return nil, invalidf(ErrIndexMismatch, "index size %d does not fit in a %d-byte file", indexSize, size)
	}
	indexStart := indexEnd - int64(indexSize)
	buf := make([]byte, PageHeaderSize+int(indexSize))
	if err := readAt(r, buf, indexStart-PageHeaderSize, "page index"); err != nil {
		return nil, err
	}
	for _, c := range buf[:PageHeaderSize] {
		if c != 0 {
			return nil, invalidf(ErrIndexMismatch, "no end-of-pages marker before the page index")
		}
	}
	index, err := parseIndex(buf[PageHeaderSize:], &pr.header, indexStart-PageHeaderSize)
	if err != nil {
		return nil, err
	}
	pr.index = index
	return pr, nil
}

// parseIndex decodes and checks page index records: pages ascending within
// the commit size, frames inside the page block without overlapping.
func parseIndex(b []byte, hdr *Header, pagesEnd int64) ([]indexEntry, error) {
	lockPgno := hdr.LockPgno()
	var index []indexEntry
	next := int64(HeaderSize)
	for {
		pgno, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, invalidf(ErrIndexMismatch, "bad varint in page index")
		}
		b = b[n:]
		if pgno == 0 {
			break
		}
		offset, n1 := binary.Uvarint(b)
		if n1 <= 0 {
			return nil, invalidf(ErrIndexMismatch, "bad varint in page index")
		}
		size, n2 := binary.Uvarint(b[n1:])
		if n2 <= 0 {
			return nil, invalidf(ErrIndexMismatch, "bad varint in page index")
		}
		b = b[n1+n2:]
		var prev uint32
		if len(index) > 0 {
			prev = index[len(index)-1].pgno
		}
		switch {
		case pgno > uint64(hdr.Commit):
			return nil, invalidf(ErrPageOutOfBounds, "index names page %d, commit %d", pgno, hdr.Commit)
		case uint32(pgno) == lockPgno:
			return nil, invalidf(ErrLockPage, "index names page %d", pgno)
		case uint32(pgno) <= prev:
			return nil, invalidf(ErrPageOutOfOrder, "index names page %d after page %d", pgno, prev)
		case offset < uint64(next) || size <= PageHeaderSize || size > uint64(pagesEnd) || offset > uint64(pagesEnd)-size:
			return nil, invalidf(ErrIndexMismatch, "page %d frame at %d (%d bytes) is outside the page block or overlaps another", pgno, offset, size)
		}
		index = append(index, indexEntry{pgno: uint32(pgno), offset: int64(offset), size: int64(size)})
		next = int64(offset + size)
	}
	if len(b) != 0 {
		return nil, invalidf(ErrIndexMismatch, "%d bytes after the index end marker", len(b))
	}
	if hdr.IsSnapshot() {
		want := hdr.Commit
		if lockPgno <= want {
			want--
		}
		if uint32(len(index)) != want {
			return nil, invalidf(ErrSnapshotIncomplete, "index names %d pages, commit %d", len(index), hdr.Commit)
		}
	}
	return index, nil
}

// Header returns the file's header.
func (pr *PageReader) Header() Header { return pr.header }

// Trailer returns the file's trailer.
func (pr *PageReader) Trailer() Trailer { return pr.trailer }

// PageN returns the number of pages in the file.
func (pr *PageReader) PageN() int { return len(pr.index) }

// Pgnos returns the page numbers in the file, in ascending order.
func (pr *PageReader) Pgnos() []uint32 {
	a := make([]uint32, len(pr.index))
	for i, e := range pr.index {
		a[i] = e.pgno
	}
	return a
}

// Has reports whether the file holds page pgno.
func (pr *PageReader) Has(pgno uint32) bool {
	_, ok := pr.find(pgno)
	return ok
}

// find returns the index entry for pgno.
func (pr *PageReader) find(pgno uint32) (indexEntry, bool) {
	i := sort.Search(len(pr.index), func(i int) bool { return pr.index[i].pgno >= pgno })
	if i < len(pr.index) && pr.index[i].pgno == pgno {
		return pr.index[i], true
	}
	return indexEntry{}, false
}

// ReadPage reads page pgno into data, which must be one page long. It
// returns an error wrapping ErrPageNotFound if the file does not hold it.
func (pr *PageReader) ReadPage(pgno uint32, data []byte) error {
	if uint32(len(data)) != pr.header.PageSize {
		return fmt.Errorf("read page %d: buffer is %d bytes, page size is %d", pgno, len(data), pr.header.PageSize)
	}
	e, ok := pr.find(pgno)
	if !ok {
		return fmt.Errorf("read page %d: %w", pgno, ErrPageNotFound)
	}
	frame := make([]byte, e.size)
	if err := readAt(pr.r, frame, e.offset, "page frame"); err != nil {
		return err
	}
	var ph PageHeader
	_ = ph.UnmarshalBinary(frame)
	if ph.Pgno != pgno {
		return invalidf(ErrIndexMismatch, "index puts page %d at %d, frame there is page %d", pgno, e.offset, ph.Pgno)
	}
	if err := ph.Validate(); err != nil {
		return err
	}
	body := frame[PageHeaderSize:]
	if ph.Flags&PageHeaderFlagSize == 0 {
		zr := lz4.NewReader(bytes.NewReader(body))
		if _, err := io.ReadFull(zr, data); err != nil {
			return invalidf(ErrCorruptPage, "page %d: LZ4 frame: %v", pgno, err)
		}
		return nil
	}
	if len(body) < 4 || uint64(binary.BigEndian.Uint32(body)) != uint64(len(body)-4) {
		return invalidf(ErrIndexMismatch, "page %d: frame size does not match its size prefix", pgno)
	}
	n, err := lz4.UncompressBlock(body[4:], data)
	if err != nil {
		return invalidf(ErrCorruptPage, "page %d: %v", pgno, err)
	}
	if n != len(data) {
		return invalidf(ErrCorruptPage, "page %d: decompressed to %d bytes, page size is %d", pgno, n, len(data))
	}
	return nil
}

// Verify reads the whole file through a Decoder and checks everything,
// including the file checksum.
func (pr *PageReader) Verify() error {
	return NewDecoder(io.NewSectionReader(pr.r, 0, pr.size)).Verify()
}

// readAt fills b from r at off, reporting a short read as ErrTruncated.
func readAt(r io.ReaderAt, b []byte, off int64, what string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return invalidf(ErrTruncated, "%s at %d", what, off)
	}
	return fmt.Errorf("read %s at %d: %w", what, off, err)
}
