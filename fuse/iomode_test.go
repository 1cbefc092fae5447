package fuse_test

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestChunkFileOpenTwice writes a non-SQLite file while it is open from
// its creation (an empty file is a database candidate until its first
// write), then opens and copies it again while that handle is still open,
// as SQLite's multiplex VFS does with its chunk files. Every open must
// work like on a local file.
func TestChunkFileOpenTwice(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	chunk := m.path("test.x001")
	f, err := os.OpenFile(chunk, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte{0, 0, 0, 0x42, 1, 2, 3, 4}, 8192)
	if _, err := f.WriteAt(data, 1024); err != nil {
		t.Fatal(err)
	}

	g, err := os.OpenFile(chunk, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open chunk again: %v", err)
	}
	got, err := io.ReadAll(g)
	g.Close()
	if err != nil {
		t.Fatalf("read chunk: %v", err)
	}
	if !bytes.Equal(got[1024:], data) {
		t.Fatal("chunk read back differs")
	}

	// A copy: the source is open twice, the copy is a new file.
	src, err := os.Open(chunk)
	if err != nil {
		t.Fatalf("open chunk to copy: %v", err)
	}
	defer src.Close()
	dst, err := os.Create(m.path("copy.x001"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatalf("copy chunk: %v", err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(m.path("copy.x001")); err != nil || !bytes.Equal(b, got) {
		t.Fatalf("copy differs: %v", err)
	}
	// A plain file opened first keeps working when the candidate's handle
	// is closed and it is opened again.
	f.Close()
	h, err := os.OpenFile(chunk, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("reopen chunk: %v", err)
	}
	h.Close()
}
