package ltx

import (
	"context"
	"fmt"
	"io"
	"os"
)

// DatabaseFile is a database file that Apply can change; *os.File is one.
type DatabaseFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// Apply writes the LTX file read from r onto db: it checks the pre-apply
// checksum against the database (unless the file is a snapshot or does not
// track checksums), writes each page, truncates the database to the commit
// size and checks the post-apply checksum. It reads the whole database
// twice to compute the checksums; ApplyWithIndex avoids that.
//
// The file is verified in full, file checksum included, before the first
// page is written, so a damaged file leaves the database unchanged. If r
// is not an io.ReadSeeker, it is first copied to a temporary file.
// A post-apply mismatch is reported after the pages are written; the
// database then no longer matches any known position. Apply does not sync
// db; the caller decides when the change must be durable.
func Apply(ctx context.Context, db DatabaseFile, r io.Reader) (Header, Trailer, error) {
	return ApplyWithIndex(ctx, db, r, nil)
}

// ApplyWithIndex is Apply for a database whose page checksums idx already
// holds: the pre-apply and post-apply checksums come from idx, which is
// updated with every page written, instead of from reading the database.
// With a nil idx it behaves like Apply. If the pre-apply check or
// verification fails, neither db nor idx is changed.
func ApplyWithIndex(ctx context.Context, db DatabaseFile, r io.Reader, idx *ChecksumIndex) (Header, Trailer, error) {
	rs, cleanup, err := seekable(r)
	if err != nil {
		return Header{}, Trailer{}, err
	}
	defer cleanup()

	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return Header{}, Trailer{}, fmt.Errorf("apply: %w", err)
	}
	dec := NewDecoder(rs)
	if err := dec.Verify(); err != nil {
		return Header{}, Trailer{}, fmt.Errorf("apply: verify LTX file: %w", err)
	}
	hdr, trailer := dec.Header(), dec.Trailer()
	if idx != nil && idx.PageSize() != hdr.PageSize {
		return hdr, trailer, fmt.Errorf("apply: %w: checksum index has %d, LTX file has %d", ErrPageSizeMismatch, idx.PageSize(), hdr.PageSize)
	}

	if !hdr.IsSnapshot() && !hdr.NoChecksum() {
		got, err := databaseChecksum(db, hdr.PageSize, idx)
		if err != nil {
			return hdr, trailer, fmt.Errorf("apply: pre-apply checksum: %w", err)
		}
		if got != hdr.PreApplyChecksum {
			return hdr, trailer, fmt.Errorf("apply: %w: database is %s, LTX file expects %s", ErrPreApplyMismatch, got, hdr.PreApplyChecksum)
		}
	}

	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return hdr, trailer, fmt.Errorf("apply: rewind LTX file: %w", err)
	}
	dec = NewDecoder(rs)
	if err := dec.DecodeHeader(); err != nil {
		return hdr, trailer, fmt.Errorf("apply: %w", err)
	}
	data := make([]byte, hdr.PageSize)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return hdr, trailer, fmt.Errorf("apply: stopped after %d pages: %w", n, err)
			}
		}
		var ph PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return hdr, trailer, fmt.Errorf("apply: %w", err)
		}
		if _, err := db.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, trailer, fmt.Errorf("apply: write page %d: %w", ph.Pgno, err)
		}
		if idx != nil {
			if err := idx.Set(ph.Pgno, data); err != nil {
				return hdr, trailer, fmt.Errorf("apply: %w", err)
			}
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, trailer, fmt.Errorf("apply: %w", err)
	}
	if err := db.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return hdr, trailer, fmt.Errorf("apply: truncate database: %w", err)
	}
	if idx != nil {
		idx.Truncate(hdr.Commit)
	}

	if !hdr.NoChecksum() {
		got, err := databaseChecksum(db, hdr.PageSize, idx)
		if err != nil {
			return hdr, trailer, fmt.Errorf("apply: post-apply checksum: %w", err)
		}
		if got != trailer.PostApplyChecksum {
			return hdr, trailer, fmt.Errorf("apply: %w: database is %s, LTX file expects %s", ErrPostApplyMismatch, got, trailer.PostApplyChecksum)
		}
	}
	return hdr, trailer, nil
}

// databaseChecksum returns the checksum from idx, or reads the database.
func databaseChecksum(db DatabaseFile, pageSize uint32, idx *ChecksumIndex) (Checksum, error) {
	if idx != nil {
		return idx.Checksum()
	}
	fi, err := db.Stat()
	if err != nil {
		return 0, err
	}
	return ChecksumDatabaseFile(db, fi.Size(), pageSize)
}

// seekable returns r as an io.ReadSeeker, copying it to a temporary file if
// it cannot seek.
func seekable(r io.Reader) (io.ReadSeeker, func(), error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		if _, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return rs, func() {}, nil
		}
	}
	f, err := os.CreateTemp("", "ferry-apply-*.ltx")
	if err != nil {
		return nil, nil, fmt.Errorf("apply: spool LTX file: %w", err)
	}
	cleanup := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	if _, err := io.Copy(f, r); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("apply: spool LTX file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("apply: spool LTX file: %w", err)
	}
	return f, cleanup, nil
}
