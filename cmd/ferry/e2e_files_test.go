package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EPlainFiles checks that files which are not SQLite databases pass
// through the mount as ordinary files and are not replicated, whatever
// their names.
func TestE2EPlainFiles(t *testing.T) {
	m := startMount(t)
	if err := os.MkdirAll(m.Path("scratch/deep"), 0o755); err != nil {
		t.Fatalf("mkdir in mount: %v", err)
	}
	for _, name := range []string{"notes.txt", "scratch/deep/fake.db", "app.db-mj0123ABCD"} {
		content := bytes.Repeat([]byte("not a database "+name+"\n"), 700)
		if err := os.WriteFile(m.Path(name), content, 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		// Append, overwrite in the middle and truncate, as scratch files do.
		f, err := os.OpenFile(m.Path(name), os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("tail")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		content = append(content, "tail"...)
		if err := os.Truncate(m.Path(name), int64(len(content)-2)); err != nil {
			t.Fatalf("truncate %s: %v", name, err)
		}
		content = content[:len(content)-2]

		for _, path := range []string{m.Path(name), m.TreePath(name)} {
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("%s: read back %d bytes, wrote %d", path, len(got), len(content))
			}
		}
		if ents, err := os.ReadDir(m.LTXDir(name)); err == nil && len(ents) > 0 {
			t.Fatalf("plain file %s has an LTX log: %d entries in %s", name, len(ents), m.LTXDir(name))
		}
	}

	// Renaming and removing work as on any file system.
	if err := os.Rename(m.Path("notes.txt"), m.Path("scratch/notes.txt")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := os.Remove(m.Path("scratch/notes.txt")); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := os.Stat(m.Path("notes.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of renamed file: %v", err)
	}
}

// TestE2EInvalidNames checks that names Ferry cannot replicate safely are
// refused with an error, and that nothing is created for them.
func TestE2EInvalidNames(t *testing.T) {
	m := startMount(t)

	// The kernel resolves ".." itself, so through the mount the checks that
	// remain are on what can reach the file system: control characters and
	// backslashes.
	// Names that are not valid UTF-8 or hold C1 controls could never be
	// uploaded: S3 refuses to list such keys.
	for _, name := range []string{"bad\x01name.db", `back\slash.db`, "new\nline.db", "bad\xff\xfe.db", "nel\u0085.db"} {
		err := os.WriteFile(m.Path(name), []byte("x"), 0o644)
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("creating %q in the mount: %v; want EINVAL", name, err)
		}
		if err == nil {
			continue
		}
		if _, err := os.Lstat(m.TreePath(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q was refused but exists under the data directory: %v", name, err)
		}
	}
	if err := os.Mkdir(m.Path("dir\x7fname"), 0o755); err == nil {
		t.Errorf("mkdir of a name with DEL in the mount succeeded; want it refused")
	}

	// Directories nest 16 deep; the 17th level is too long a name, not an
	// I/O error.
	deep := strings.TrimSuffix(strings.Repeat("d/", 16), "/")
	if err := os.MkdirAll(m.Path(deep), 0o755); err != nil {
		t.Fatalf("mkdir 16 levels deep: %v", err)
	}
	if err := os.Mkdir(m.Path(deep+"/d"), 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("mkdir 17 levels deep: %v; want ENAMETOOLONG", err)
	}

	// A ".." name given on the command line is refused before it can touch
	// anything outside the data directory.
	for _, name := range []string{"../escape.db", "a/../../escape.db", ".."} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, ferryBin, "verify", "-config", m.Config, name)
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("ferry verify %q: %v (want a non-zero exit)\n%s", name, err, out)
		}
		if !strings.Contains(string(out), "invalid name") {
			t.Errorf("ferry verify %q printed %q; want an invalid name error", name, out)
		}
		if strings.Contains(string(out), "panic") {
			t.Errorf("ferry verify %q panicked:\n%s", name, out)
		}
	}
	if _, err := os.Lstat(m.DataDir + "/../escape.db"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("escape.db appeared next to the data directory: %v", err)
	}
}
