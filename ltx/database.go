package ltx

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// DecodeDatabaseTo reads a snapshot and writes the database it holds to w:
// every page from 1 to the commit size, with a zeroed lock page if the
// database reaches it. It verifies the whole file, and fails on files that
// are not snapshots. On error, what was written to w must be discarded.
func (dec *Decoder) DecodeDatabaseTo(w io.Writer) error {
	if err := dec.DecodeHeader(); err != nil {
		return fmt.Errorf("decode header: %w", err)
	}
	hdr := dec.Header()
	if !hdr.IsSnapshot() {
		return fmt.Errorf("decode database: TXIDs %s-%s are not a snapshot", hdr.MinTXID, hdr.MaxTXID)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	data := make([]byte, hdr.PageSize)
	zero := make([]byte, hdr.PageSize)
	var ph PageHeader
	for pgno := uint32(1); pgno <= hdr.Commit; pgno++ {
		page := data
		if pgno == hdr.LockPgno() {
			page = zero
		} else if err := dec.DecodePage(&ph, data); err != nil {
			if err == io.EOF {
				err = invalidf(ErrSnapshotIncomplete, "no page %d, commit %d", pgno, hdr.Commit)
			}
			return fmt.Errorf("decode page %d: %w", pgno, err)
		}
		if _, err := bw.Write(page); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
	}
	if err := dec.DecodePage(&ph, data); err != io.EOF {
		if err == nil {
			err = invalidf(ErrPageOutOfBounds, "page %d after commit %d", ph.Pgno, hdr.Commit)
		}
		return fmt.Errorf("decode database: %w", err)
	}
	if err := dec.Close(); err != nil {
		return fmt.Errorf("close decoder: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write database: %w", err)
	}
	return nil
}

// PeekHeader reads and validates the header at the start of r. It returns
// a reader that yields the whole file again, header included, so the
// caller can go on to decode it.
func PeekHeader(r io.Reader) (Header, io.Reader, error) {
	b := make([]byte, HeaderSize)
	n, err := io.ReadFull(r, b)
	r = io.MultiReader(bytes.NewReader(b[:n]), r)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return Header{}, r, invalidf(ErrTruncated, "in header at byte %d", n)
	} else if err != nil {
		return Header{}, r, fmt.Errorf("read header: %w", err)
	}
	var hdr Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return Header{}, r, err
	}
	if err := hdr.Validate(); err != nil {
		return hdr, r, err
	}
	return hdr, r, nil
}
