package ltx_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

func TestDecodeDatabaseTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	pages := snapshotPages(rng, 1024, 30)
	b := encodeFile(t, ltx.Header{Version: 3, PageSize: 1024, Commit: 30, MinTXID: 1, MaxTXID: 3}, pages, 0)
	var db bytes.Buffer
	if err := ltx.NewDecoder(bytes.NewReader(b)).DecodeDatabaseTo(&db); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, p := range pages {
		want = append(want, p.data...)
	}
	if !bytes.Equal(db.Bytes(), want) {
		t.Fatal("database differs")
	}

	good, _, _ := validFile(t)
	if err := ltx.NewDecoder(bytes.NewReader(good)).DecodeDatabaseTo(&db); err == nil {
		t.Fatal("non-snapshot decoded as a database")
	}
	bad := bytes.Clone(b)
	bad[len(bad)-1] ^= 1
	if err := ltx.NewDecoder(bytes.NewReader(bad)).DecodeDatabaseTo(&db); !errors.Is(err, ltx.ErrChecksumMismatch) {
		t.Fatalf("damaged snapshot: %v", err)
	}
}

func TestPeekHeader(t *testing.T) {
	good, hdr, pages := validFile(t)
	got, r, err := ltx.PeekHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	hdr.Version = ltx.Version
	if got != hdr {
		t.Fatalf("header %+v", got)
	}
	_, gotPages, _, err := decodeFile(r)
	if err != nil || !equalPages(gotPages, pages) {
		t.Fatalf("decode after peek: %v", err)
	}
	if _, _, err := ltx.PeekHeader(bytes.NewReader(good[:50])); !errors.Is(err, ltx.ErrTruncated) {
		t.Fatalf("short: %v", err)
	}
	if _, _, err := ltx.PeekHeader(bytes.NewReader(append([]byte("XXXX"), good[4:]...))); !errors.Is(err, ltx.ErrInvalidMagic) {
		t.Fatalf("magic: %v", err)
	}
}
