package replicate

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

func TestSpool(t *testing.T) {
	for _, limit := range []int64{1 << 20, 1000} { // in memory, then on disk
		data := make([]byte, 300_000)
		_, _ = rand.Read(data)
		s := &spool{limit: limit}
		for off := 0; off < len(data); off += 7000 {
			end := min(off+7000, len(data))
			if _, err := s.Write(data[off:end]); err != nil {
				t.Fatal(err)
			}
		}
		if (s.f != nil) != (limit < int64(len(data))) {
			t.Fatalf("limit %d: on disk = %v", limit, s.f != nil)
		}
		for i := 0; i < 2; i++ { // readable more than once
			r, err := s.Reader()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			if !bytes.Equal(got, data) || s.Size() != int64(len(data)) {
				t.Fatalf("limit %d: content differs", limit)
			}
		}
		if same, err := s.sameContent(bytes.NewReader(data)); !same || err != nil {
			t.Fatalf("sameContent of equal content: %v %v", same, err)
		}
		if same, _ := s.sameContent(bytes.NewReader(data[:len(data)-1])); same {
			t.Fatal("sameContent of a prefix")
		}
		other := append([]byte{}, data...)
		other[len(other)-1] ^= 1
		if same, _ := s.sameContent(bytes.NewReader(other)); same {
			t.Fatal("sameContent of different content")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
