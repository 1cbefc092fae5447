package fuse_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestBadNames(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	for _, name := range []string{"a\x01b.db", "tab\there", "back\\slash", strings.Repeat("x", 256), ".ferry"} {
		_, err := os.Create(m.path(name))
		if err == nil {
			t.Errorf("create %q succeeded", name)
			continue
		}
		if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENAMETOOLONG) && !errors.Is(err, syscall.EISDIR) {
			t.Errorf("create %q: %v, want EINVAL or EPERM", name, err)
		}
		if err := os.Mkdir(m.path(name+"d"), 0o755); err == nil && name != ".ferry" {
			t.Errorf("mkdir %q succeeded", name+"d")
		}
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

	// Too deep.
	deep := m.dir
	var err error
	for i := 0; i < 17 && err == nil; i++ {
		deep += "/d"
		err = os.Mkdir(deep, 0o755)
	}
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("mkdir 17 levels deep: %v, want EINVAL", err)
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
