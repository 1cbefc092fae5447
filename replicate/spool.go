package replicate

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spoolMemory is the largest file a spool keeps in memory; a larger one,
// such as the first upload of a big database, goes to a temporary file.
const spoolMemory = 64 << 20

// spool holds one LTX file being built or downloaded.
type spool struct {
	limit int64 // bytes kept in memory; zero means spoolMemory
	buf   bytes.Buffer
	f     *os.File // set once the content outgrew memory
	n     int64
}

// Write implements io.Writer.
func (s *spool) Write(p []byte) (int, error) {
	limit := s.limit
	if limit == 0 {
		limit = spoolMemory
	}
	if s.f == nil && int64(s.buf.Len()+len(p)) > limit {
		f, err := os.CreateTemp("", "ferry-spool-*.ltx")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		_ = os.Remove(f.Name()) // unlinked: gone when closed, even after a crash
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.f = f
		s.buf = bytes.Buffer{}
	}
	var n int
	var err error
	if s.f != nil {
		n, err = s.f.Write(p)
	} else {
		n, err = s.buf.Write(p)
	}
	s.n += int64(n)
	return n, err
}

// Size returns the bytes written.
func (s *spool) Size() int64 { return s.n }

// Reader returns a reader positioned at the start of the content. Only
// one reader may be in use at a time.
func (s *spool) Reader() (io.ReadSeeker, error) {
	if s.f == nil {
		return bytes.NewReader(s.buf.Bytes()), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return s.f, nil
}

// Close releases the spool.
func (s *spool) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// sameContent reports whether r yields exactly the spool's content.
func (s *spool) sameContent(r io.Reader) (bool, error) {
	mine, err := s.Reader()
	if err != nil {
		return false, err
	}
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(mine, a)
		nb, errb := io.ReadFull(r, b)
		if na != nb || !bytes.Equal(a[:na], b[:nb]) {
			return false, nil
		}
		aEnd := erra == io.EOF || erra == io.ErrUnexpectedEOF
		bEnd := errb == io.EOF || errb == io.ErrUnexpectedEOF
		if erra != nil && !aEnd {
			return false, erra
		}
		if errb != nil && !bEnd {
			return false, errb
		}
		if aEnd || bEnd {
			return aEnd && bEnd, nil
		}
	}
}
