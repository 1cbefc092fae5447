package ferry

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// The checksum index file: a fixed header naming the position and the
// state of the files it describes, one checksum per page, and a CRC-64 of
// all of it.
const indexMagic = "FERRYIX2"

type indexHeader struct {
	Pos      Pos
	PageSize uint32
	PageN    uint32
	DB       fileStamp
	WAL      fileStamp
}

// fileStamp identifies one state of a file. Size and modification time
// alone can be put back by whoever changes the file while Ferry is stopped
// (touch -d, or a write that keeps the size within one clock tick); the
// change time cannot be set by users and moves with every write, and the
// inode tells a replaced file.
type fileStamp struct {
	Size  int64
	Mtime int64
	Ctime int64
	Ino   uint64
}

// fields lists the stamp as it is stored.
func (s fileStamp) fields() []uint64 {
	return []uint64{uint64(s.Size), uint64(s.Mtime), uint64(s.Ctime), s.Ino}
}

func (d *DB) indexPath() string { return d.store.layout.ChecksumIndexPath(d.name) }

// stampFile returns a file's stamp, zero if it is missing.
func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	s := fileStamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Ctime = st.Ctim.Nano()
		s.Ino = st.Ino
	}
	return s
}

func (d *DB) currentIndexHeader() indexHeader {
	path := d.store.layout.DBPath(d.name)
	return indexHeader{
		Pos: d.pos, PageSize: d.pageSize, PageN: d.pageN,
		DB: stampFile(path), WAL: stampFile(path + "-wal"),
	}
}

// errStaleIndex says the files changed after the checksum index was saved.
var errStaleIndex = errors.New("checksum index is stale")

// indexHeaderFields is the number of 8-byte fields after the magic.
const indexHeaderFields = 12

// saveIndex writes the checksum index durably.
func (d *DB) saveIndex() error {
	tmp := d.indexPath() + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create checksum index: %w", err)
	}
	defer f.Close()
	crc := crc64.New(crc64.MakeTable(crc64.ISO))
	w := bufio.NewWriter(io.MultiWriter(f, crc))
	h := d.currentIndexHeader()
	if _, err := w.WriteString(indexMagic); err != nil {
		return err
	}
	fields := []uint64{uint64(h.Pos.TXID), uint64(h.Pos.PostApplyChecksum), uint64(h.PageSize), uint64(h.PageN)}
	fields = append(append(fields, h.DB.fields()...), h.WAL.fields()...)
	if err := binary.Write(w, binary.BigEndian, fields); err != nil {
		return err
	}
	var b [8]byte
	for _, c := range d.sums {
		binary.BigEndian.PutUint64(b[:], uint64(c))
		if _, err := w.Write(b[:]); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write checksum index: %w", err)
	}
	binary.BigEndian.PutUint64(b[:], crc.Sum64())
	if _, err := f.Write(b[:]); err != nil {
		return fmt.Errorf("write checksum index: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync checksum index: %w", err)
	}
	if err := os.Rename(tmp, d.indexPath()); err != nil {
		return fmt.Errorf("rename checksum index: %w", err)
	}
	return syncDir(d.store.layout.MetaDir(d.name))
}

// loadIndex loads the checksum index if it describes exactly the current
// position and files; it reports whether it did.
func (d *DB) loadIndex(pageSize, pageN uint32) bool {
	sums, err := d.readIndex(pageSize, pageN)
	if err != nil {
		switch {
		case errors.Is(err, errStaleIndex):
			d.logger.Warn("database files changed since Ferry stopped; reading every page", "reason", err)
		case !errors.Is(err, os.ErrNotExist):
			d.logger.Info("checksum index not usable; reading every page", "reason", err)
		}
		return false
	}
	var sum ltx.Checksum
	for _, c := range sums {
		sum ^= c
	}
	if ltx.ChecksumFlag|sum != d.pos.PostApplyChecksum {
		d.logger.Warn("checksum index does not match the position; reading every page")
		return false
	}
	d.sums, d.sum, d.pageSize, d.pageN = sums, sum, pageSize, pageN
	return true
}

func (d *DB) readIndex(pageSize, pageN uint32) ([]ltx.Checksum, error) {
	b, err := os.ReadFile(d.indexPath())
	if err != nil {
		return nil, err
	}
	const hdrLen = len(indexMagic) + indexHeaderFields*8
	if len(b) < hdrLen+8 || string(b[:len(indexMagic)]) != indexMagic {
		return nil, errors.New("bad header")
	}
	body, tail := b[:len(b)-8], b[len(b)-8:]
	if crc64.Checksum(body, crc64.MakeTable(crc64.ISO)) != binary.BigEndian.Uint64(tail) {
		return nil, errors.New("bad checksum")
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[len(indexMagic)+8*i:]) }
	stamp := func(i int) fileStamp {
		return fileStamp{Size: int64(u(i)), Mtime: int64(u(i + 1)), Ctime: int64(u(i + 2)), Ino: u(i + 3)}
	}
	got := indexHeader{
		Pos:      Pos{TXID: ltx.TXID(u(0)), PostApplyChecksum: ltx.Checksum(u(1))},
		PageSize: uint32(u(2)), PageN: uint32(u(3)),
		DB: stamp(4), WAL: stamp(8),
	}
	want := d.currentIndexHeader()
	want.PageSize, want.PageN = pageSize, pageN
	if got != want {
		return nil, fmt.Errorf("%w: saved at %v", errStaleIndex, time.Unix(0, got.DB.Ctime).UTC())
	}
	if (len(body)-hdrLen)/8 != int(pageN) || (len(body)-hdrLen)%8 != 0 {
		return nil, errors.New("wrong length")
	}
	sums := make([]ltx.Checksum, pageN)
	for i := range sums {
		sums[i] = ltx.Checksum(binary.BigEndian.Uint64(body[hdrLen+8*i:]))
	}
	return sums, nil
}
