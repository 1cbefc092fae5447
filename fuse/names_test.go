package fuse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrydb/ferry"
)

// notFoundRestorer stands in for a bucket that holds no databases, so that
// lookups of missing names go the way they do under `ferry mount`.
type notFoundRestorer struct{}

func (notFoundRestorer) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	return ferry.Pos{}, fmt.Errorf("%q: %w", name, ferry.ErrDatabaseNotFound)
}

func TestBadNames(t *testing.T) {
	m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetRestorer(notFoundRestorer{}) })
	for _, tc := range []struct {
		name string
		want syscall.Errno
	}{
		{"a\x01b.db", syscall.EINVAL},
		{"tab\there", syscall.EINVAL},
		{"back\\slash", syscall.EINVAL},
		{"bad\xff\xfe.db", syscall.EINVAL},
		{"nel\u0085.db", syscall.EINVAL},
		{"csi\u009b.db", syscall.EINVAL},
		{strings.Repeat("x", 256), syscall.ENAMETOOLONG},
		{".ferry", syscall.EISDIR},
	} {
		_, err := os.Create(m.path(tc.name))
		if !errors.Is(err, tc.want) {
			t.Errorf("create %q: %v, want %v", tc.name, err, tc.want)
		}
		if tc.name == ".ferry" {
			continue
		}
		if err := os.Mkdir(m.path(tc.name+"d"), 0o755); !errors.Is(err, tc.want) {
			t.Errorf("mkdir %q: %v, want %v", tc.name+"d", err, tc.want)
		}
	}
	if names := m.store.DBs(); len(names) != 0 {
		t.Errorf("databases after refused creates: %q", names)
	}
	entries, err := os.ReadDir(m.layout.TreeDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("refused name %q reached the data directory", e.Name())
	}

	// ".." never escapes the mount: the kernel resolves it, and the
	// result stays inside.
	if err := os.WriteFile(m.path("sub/../../escape"), []byte("x"), 0o644); err == nil {
		if _, err := os.Stat(m.path("escape")); err == nil {
			t.Log("sub/../../escape resolved inside the parent of the mount, not the data directory")
		}
	}
	if _, err := os.Stat(m.layout.Dir + "/escape"); err == nil {
		t.Fatal("a path with .. reached the data directory")
	}

	// Too deep: the first 16 levels are made, the 17th is refused.
	deep := m.dir
	var depth int
	for depth = 1; depth <= ferry.MaxNameDepth+1; depth++ {
		deep += "/d"
		if err = os.Mkdir(deep, 0o755); err != nil {
			break
		}
	}
	if depth != ferry.MaxNameDepth+1 || !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("mkdir %d levels deep: %v, want ENAMETOOLONG at level %d", depth, err, ferry.MaxNameDepth+1)
	}
	if _, err := os.Create(deep); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("create %d levels deep: %v, want ENAMETOOLONG", depth, err)
	}
}

func TestSubdirectoriesAndPlainFiles(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	if err := os.MkdirAll(m.path("customer/2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, m.path("customer/2026/event.db"), "wal", "normal")
	mustExec(t, db, "CREATE TABLE t (v)")
	mustExec(t, db, "INSERT INTO t VALUES (1)")

	// A plain file, even one named like a database, is not replicated.
	if err := os.WriteFile(m.path("customer/notes.db"), []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("customer/2026/event.db-mj0123ABCD"), []byte("super-journal"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.path("customer/notes.db"))
	if err != nil || string(got) != "not a database" {
		t.Fatalf("read plain file: %q, %v", got, err)
	}
	if err := os.Rename(m.path("customer/notes.db"), m.path("customer/notes2.db")); err != nil {
		t.Fatalf("rename plain file: %v", err)
	}
	if err := os.Rename(m.path("customer/notes2.db"), m.path("customer/2026/event.db")); err == nil {
		t.Fatal("renaming a file over a database succeeded")
	}
	names := m.store.DBs()
	if len(names) != 1 || names[0] != "customer/2026/event.db" {
		t.Fatalf("databases = %q", names)
	}
	pos, err := os.ReadFile(m.path(".ferry/pos/customer/2026/event.db"))
	if err != nil {
		t.Fatal(err)
	}
	if want := mustPos(t, m, "customer/2026/event.db").String() + "\n"; string(pos) != want {
		t.Fatalf(".ferry/pos = %q, want %q", pos, want)
	}
	if err := os.WriteFile(m.path(".ferry/pos/customer/2026/event.db"), []byte("x"), 0o644); err == nil {
		t.Fatal("writing the position file succeeded")
	}
	if err := os.Remove(m.path("customer/2026/event.db-mj0123ABCD")); err != nil {
		t.Fatal(err)
	}
}
