package ltx_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc64"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	"github.com/pierrec/lz4/v4"
)

// rawPage is a page frame written verbatim by buildRaw, without the
// encoder's checks, so tests can produce files the encoder would refuse.
type rawPage struct {
	pgno     uint32
	legacy   bool // LZ4 frame without size prefix, as older encoders wrote
	data     []byte
	badBlock []byte // if set, written as the compressed payload instead
}

// rawIndexEntry is one page index record.
type rawIndexEntry struct{ pgno, offset, size uint64 }

// buildRaw writes an LTX file from parts, with a correct file checksum.
// editIndex, if set, may change the index before it is written.
func buildRaw(t testing.TB, hdr ltx.Header, pages []rawPage, post ltx.Checksum, editIndex func([]rawIndexEntry) []rawIndexEntry) []byte {
	t.Helper()
	tab := crc64.MakeTable(crc64.ISO)
	var out bytes.Buffer
	var crc uint64
	write := func(b []byte, hashed bool) {
		out.Write(b)
		if hashed {
			crc = crc64.Update(crc, tab, b)
		}
	}
	hb, _ := hdr.MarshalBinary()
	write(hb, true)

	var index []rawIndexEntry
	for _, p := range pages {
		off := out.Len()
		if p.legacy {
			ph := ltx.PageHeader{Pgno: p.pgno}
			b, _ := ph.MarshalBinary()
			write(b, true)
			var fb bytes.Buffer
			zw := lz4.NewWriter(&fb)
			if _, err := zw.Write(p.data); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			write(fb.Bytes(), false)
		} else {
			ph := ltx.PageHeader{Pgno: p.pgno, Flags: ltx.PageHeaderFlagSize}
			b, _ := ph.MarshalBinary()
			block := p.badBlock
			if block == nil {
				block = make([]byte, lz4.CompressBlockBound(len(p.data)))
				n, err := lz4.CompressBlock(p.data, block, nil)
				if err != nil || n == 0 {
					t.Fatalf("compress: %d, %v", n, err)
				}
				block = block[:n]
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(block)))
			write(b, true)
			write(block, false)
		}
		crc = crc64.Update(crc, tab, p.data)
		index = append(index, rawIndexEntry{uint64(p.pgno), uint64(off), uint64(out.Len() - off)})
	}
	write(make([]byte, ltx.PageHeaderSize), true)
	if editIndex != nil {
		index = editIndex(index)
	}
	var ib []byte
	for _, e := range index {
		ib = binary.AppendUvarint(ib, e.pgno)
		ib = binary.AppendUvarint(ib, e.offset)
		ib = binary.AppendUvarint(ib, e.size)
	}
	ib = append(ib, 0)
	ib = binary.BigEndian.AppendUint64(ib, uint64(len(ib)))
	write(ib, true)
	write(binary.BigEndian.AppendUint64(nil, uint64(post)), true)
	write(binary.BigEndian.AppendUint64(nil, uint64(ltx.ChecksumFlag|ltx.Checksum(crc))), false)
	return out.Bytes()
}

// TestBuildRaw_MatchesEncoder guards the test builder itself: for valid
// input it must write exactly what the encoder writes.
func TestBuildRaw_MatchesEncoder(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), 4096/3+1)[:4096]
	hdr := ltx.Header{Version: 3, PageSize: 4096, Commit: 9, MinTXID: 2, MaxTXID: 3, PreApplyChecksum: ltx.ChecksumFlag | 5}
	want := encodeFile(t, hdr, []testPage{{4, data}, {9, data}}, ltx.ChecksumFlag|6)
	got := buildRaw(t, hdr, []rawPage{{pgno: 4, data: data}, {pgno: 9, data: data}}, ltx.ChecksumFlag|6, nil)
	if !bytes.Equal(got, want) {
		t.Fatal("raw builder and encoder disagree")
	}
}
