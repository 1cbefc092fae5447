package peer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
)

// Frame types. Every frame is
//
//	type     1 byte
//	name     2-byte length, then the database name (empty for a heartbeat)
//	payload  8-byte length, then the payload
//	crc      4 bytes: CRC-32C of everything before it
//
// all integers big-endian.
const (
	// FrameChangeSet carries one LTX file that continues the position
	// the reader last reached.
	FrameChangeSet byte = 'C'
	// FrameSnapshot carries a reason byte and then an LTX snapshot (TXIDs
	// 1 to the holder's position) that replaces the reader's copy.
	FrameSnapshot byte = 'S'
	// FrameHeartbeat carries the holder's clock, 8 bytes of Unix
	// milliseconds, so that an idle stream still shows it is alive.
	FrameHeartbeat byte = 'H'
	// FrameError carries a message: the holder will not stream the named
	// database (it does not hold its lease, say). The reader follows it
	// through the bucket instead.
	FrameError byte = 'E'
)

// Reasons for a snapshot, the first payload byte of FrameSnapshot.
const (
	// SnapshotNew: the reader has no copy.
	SnapshotNew byte = 0
	// SnapshotBehind: the holder's log no longer reaches back to the
	// reader's position, or does not end a change set there.
	SnapshotBehind byte = 1
	// SnapshotDiverged: the reader's copy has a different checksum at
	// the same TXID, or TXIDs the holder never had: split brain.
	SnapshotDiverged byte = 2
)

const (
	maxNameLen = 4096
	// maxPayload bounds what a reader accepts, so a garbled length cannot
	// make it spool without end.
	maxPayload = 1 << 40
	// memPayload is the largest payload kept in memory; larger ones are
	// spooled to a temporary file.
	memPayload = 8 << 20
)

// ErrBadFrame is wrapped by every error about a malformed frame.
var ErrBadFrame = errors.New("malformed peer stream frame")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameWriter writes frames to a buffered stream.
type frameWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
}

// write writes one frame whose payload is the n bytes read from payload.
func (fw *frameWriter) write(typ byte, name string, payload io.Reader, n int64) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("database name of %d bytes too long for a frame", len(name))
	}
	fw.crc.Reset()
	out := io.MultiWriter(fw.w, fw.crc)
	var hdr [1 + 2]byte
	hdr[0] = typ
	binary.BigEndian.PutUint16(hdr[1:], uint16(len(name)))
	if _, err := out.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := io.WriteString(out, name); err != nil {
		return err
	}
	var lb [8]byte
	binary.BigEndian.PutUint64(lb[:], uint64(n))
	if _, err := out.Write(lb[:]); err != nil {
		return err
	}
	if m, err := io.CopyN(out, payload, n); err != nil {
		return fmt.Errorf("frame payload: wrote %d of %d bytes: %w", m, n, err)
	}
	var cb [4]byte
	binary.BigEndian.PutUint32(cb[:], fw.crc.Sum32())
	_, err := fw.w.Write(cb[:])
	return err
}

// flush sends what is buffered.
func (fw *frameWriter) flush() error { return fw.w.Flush() }

// frame is one frame read from a stream. Its payload is in memory or, when
// large, in a temporary file that close removes.
type frame struct {
	typ     byte
	name    string
	mem     []byte
	file    *os.File
	size    int64
	tempDir string
}

// payload returns a reader over the whole payload.
func (f *frame) payload() io.Reader {
	if f.file != nil {
		return io.NewSectionReader(f.file, 0, f.size)
	}
	return bytes.NewReader(f.mem)
}

func (f *frame) close() {
	if f.file != nil {
		f.file.Close()
		os.Remove(f.file.Name())
	}
}

// readFrame reads and checks one frame. A frame that is cut off, too
// large, of an unknown type or whose checksum is wrong is an error
// wrapping ErrBadFrame, and nothing of it is returned.
func readFrame(r *bufio.Reader, tempDir string) (*frame, error) {
	crc := crc32.New(castagnoli)
	in := io.TeeReader(r, crc)
	var hdr [3]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: header: %w", ErrBadFrame, err)
	}
	f := &frame{typ: hdr[0], tempDir: tempDir}
	switch f.typ {
	case FrameChangeSet, FrameSnapshot, FrameHeartbeat, FrameError:
	default:
		return nil, fmt.Errorf("%w: unknown type 0x%02x", ErrBadFrame, f.typ)
	}
	nameLen := int(binary.BigEndian.Uint16(hdr[1:]))
	if nameLen > maxNameLen {
		return nil, fmt.Errorf("%w: name of %d bytes", ErrBadFrame, nameLen)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(in, name); err != nil {
		return nil, fmt.Errorf("%w: name: %w", ErrBadFrame, err)
	}
	f.name = string(name)
	var lb [8]byte
	if _, err := io.ReadFull(in, lb[:]); err != nil {
		return nil, fmt.Errorf("%w: length: %w", ErrBadFrame, err)
	}
	n := binary.BigEndian.Uint64(lb[:])
	if n > maxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrBadFrame, n)
	}
	f.size = int64(n)
	if n <= memPayload {
		f.mem = make([]byte, n)
		if _, err := io.ReadFull(in, f.mem); err != nil {
			return nil, fmt.Errorf("%w: payload cut off: %w", ErrBadFrame, err)
		}
	} else {
		tmp, err := os.CreateTemp(tempDir, "ferry-peer-*.ltx")
		if err != nil {
			return nil, fmt.Errorf("spool frame: %w", err)
		}
		f.file = tmp
		if _, err := io.CopyN(tmp, in, f.size); err != nil {
			f.close()
			return nil, fmt.Errorf("%w: payload cut off: %w", ErrBadFrame, err)
		}
	}
	sum := crc.Sum32()
	var cb [4]byte
	if _, err := io.ReadFull(r, cb[:]); err != nil {
		f.close()
		return nil, fmt.Errorf("%w: checksum cut off: %w", ErrBadFrame, err)
	}
	if got := binary.BigEndian.Uint32(cb[:]); got != sum {
		f.close()
		return nil, fmt.Errorf("%w: checksum %08x, content gives %08x", ErrBadFrame, got, sum)
	}
	return f, nil
}

func bytesOf(b []byte) io.Reader { return bytes.NewReader(b) }
