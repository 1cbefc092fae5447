package ltx_test

import (
	"errors"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	sltx "github.com/superfly/ltx"
)

func TestHeader_MarshalRoundTrip(t *testing.T) {
	h := ltx.Header{Version: 3, Flags: ltx.HeaderFlagNoChecksum, PageSize: 8192, Commit: 77, MinTXID: 3, MaxTXID: 9,
		Timestamp: 1234567890123, WALOffset: 32, WALSize: 100, WALSalt1: 5, WALSalt2: 6, NodeID: 0xabcdef}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got ltx.Header
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("got %+v, want %+v", got, h)
	}
	sh := toSuperflyHeader(h)
	sb, _ := sh.MarshalBinary()
	if string(sb) != string(b) {
		t.Fatal("header bytes differ from superfly/ltx")
	}
	if err := got.UnmarshalBinary(b[:50]); err == nil {
		t.Fatal("short buffer accepted")
	}
}

func TestConstants_MatchSuperfly(t *testing.T) {
	if ltx.HeaderFlagNoChecksum != sltx.HeaderFlagNoChecksum || ltx.HeaderFlagMask != sltx.HeaderFlagMask ||
		ltx.PageHeaderFlagSize != sltx.PageHeaderFlagSize || uint64(ltx.ChecksumFlag) != uint64(sltx.ChecksumFlag) ||
		ltx.HeaderSize != sltx.HeaderSize || ltx.PageHeaderSize != sltx.PageHeaderSize || ltx.TrailerSize != sltx.TrailerSize ||
		ltx.Magic != sltx.Magic || ltx.Version != sltx.Version {
		t.Fatal("constants differ from superfly/ltx")
	}
	for _, sz := range []uint32{512, 1024, 4096, 65536} {
		if ltx.LockPgno(sz) != sltx.LockPgno(sz) {
			t.Fatalf("LockPgno(%d) = %d, superfly %d", sz, ltx.LockPgno(sz), sltx.LockPgno(sz))
		}
	}
	if ltx.LockPgno(4096) != 262145 {
		t.Fatalf("LockPgno(4096) = %d", ltx.LockPgno(4096))
	}
	for sz := uint32(0); sz <= 1<<17; sz++ {
		if ltx.IsValidPageSize(sz) != sltx.IsValidPageSize(sz) {
			t.Fatalf("IsValidPageSize(%d) differs", sz)
		}
	}
}

func TestHeader_Validate(t *testing.T) {
	ok := ltx.Header{Version: 3, PageSize: 4096, Commit: 1, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	zeroVersion := ok
	zeroVersion.Version = 0
	if err := zeroVersion.Validate(); err != nil {
		t.Fatalf("zero version: %v", err)
	}
	mod := func(f func(*ltx.Header)) ltx.Header { h := ok; f(&h); return h }
	cases := []struct {
		name string
		h    ltx.Header
		want error
	}{
		{"version", mod(func(h *ltx.Header) { h.Version = 2 }), ltx.ErrInvalidHeader},
		{"flags", mod(func(h *ltx.Header) { h.Flags = 1 }), ltx.ErrInvalidHeaderFlags},
		{"page size", mod(func(h *ltx.Header) { h.PageSize = 4095 }), ltx.ErrInvalidPageSize},
		{"max txid zero", mod(func(h *ltx.Header) { h.MaxTXID = 0 }), ltx.ErrInvalidTXID},
		{"wal offset", mod(func(h *ltx.Header) { h.WALOffset = -1 }), ltx.ErrInvalidHeader},
		{"wal size", mod(func(h *ltx.Header) { h.WALSize = -1 }), ltx.ErrInvalidHeader},
		{"salt without offset", mod(func(h *ltx.Header) { h.WALSalt1 = 1 }), ltx.ErrInvalidHeader},
		{"size without offset", mod(func(h *ltx.Header) { h.WALSize = 1 }), ltx.ErrInvalidHeader},
		{"no-checksum with pre-apply", mod(func(h *ltx.Header) { h.Flags = ltx.HeaderFlagNoChecksum }), ltx.ErrInvalidHeader},
	}
	for _, tc := range cases {
		if err := tc.h.Validate(); !errors.Is(err, tc.want) || !errors.Is(err, ltx.ErrInvalidFile) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestFilename(t *testing.T) {
	name := ltx.FormatFilename(1, 0xabc)
	if name != "0000000000000001-0000000000000abc.ltx" || name != sltx.FormatFilename(1, 0xabc) {
		t.Fatalf("FormatFilename = %q", name)
	}
	lo, hi, err := ltx.ParseFilename(name)
	if err != nil || lo != 1 || hi != 0xabc {
		t.Fatalf("ParseFilename = %d, %d, %v", lo, hi, err)
	}
	for _, bad := range []string{"", "x.ltx", "0000000000000001-0000000000000ABC.ltx", "0000000000000001-0000000000000abc.ltxx",
		"000000000000001-00000000000000abc.ltx", "0000000000000002-0000000000000001.ltx", "+000000000000001-0000000000000001.ltx"} {
		if _, _, err := ltx.ParseFilename(bad); !errors.Is(err, ltx.ErrInvalidFilename) {
			t.Errorf("ParseFilename(%q) = %v", bad, err)
		}
	}
	if ltx.TXID(0x10).String() != "0000000000000010" {
		t.Fatal("TXID.String")
	}
}
