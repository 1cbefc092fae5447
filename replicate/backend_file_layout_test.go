package replicate

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

func TestFilePathLayout(t *testing.T) {
	for key, want := range map[string]string{
		"a.db/0000/0000000000000001-0000000000000002.ltx":        "a.db/ltx/0/0000000000000001-0000000000000002.ltx",
		"p/x/a.db/0009/0000000000000001-00000000000000ff.ltx":    "p/x/a.db/ltx/9/0000000000000001-00000000000000ff.ltx",
		"a.db/ferry-head.json":                                   "a.db/ferry-head.json",
		"a.db/000a/0000000000000001-0000000000000002.ltx":        "a.db/000a/0000000000000001-0000000000000002.ltx",  // no level 10
		"0001/0000/0000000000000001-0000000000000001.ltx":        "0001/ltx/0/0000000000000001-0000000000000001.ltx", // a database named 0001
		"a.db/0001/not-an-ltx-name.ltx":                          "a.db/0001/not-an-ltx-name.ltx",
		"leases/a.db":                                            "leases/a.db",
		"0000/0000000000000001-0000000000000001.ltx":             "0000/0000000000000001-0000000000000001.ltx", // no database
		"a.db/ltx/0001/0000000000000001-0000000000000001.ltx":    "a.db/ltx/ltx/1/0000000000000001-0000000000000001.ltx",
		"a.db/ltx/ferry-head.json":                               "a.db/ltx/ferry-head.json",
		"a.db/ltx/1/0000/0000000000000001-0000000000000001.ltx":  "a.db/ltx/1/ltx/0/0000000000000001-0000000000000001.ltx",
		"a.db/ltx/1/ferry-head.json":                             "a.db/ltx/1/ferry-head.json",
		"a.db/ltx/01/0000/0000000000000001-0000000000000001.ltx": "a.db/ltx/01/ltx/0/0000000000000001-0000000000000001.ltx",
	} {
		if got := filePath(key); got != want {
			t.Errorf("filePath(%q) = %q, want %q", key, got, want)
		}
		if back := fileKey(filePath(key)); back != key {
			t.Errorf("fileKey(filePath(%q)) = %q", key, back)
		}
	}
}

// TestFileBucketLitestreamRestore has stock `litestream restore` (v0.5.18)
// read a database out of the file backend, newest and at a TXID.
func TestFileBucketLitestreamRestore(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "bucket")
	b, err := NewFileBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, testOptions())
	d := newTestDB(t, layout, "acme/orders.db")
	for i := 0; i < 6; i++ {
		d.insert(20, 100)
		if err := r.Sync(ctx, d.name); err != nil {
			t.Fatal(err)
		}
	}
	replica := filepath.Join(root, "acme", "orders.db")
	if got := litestreamRestore(t, replica, 0); !bytes.Equal(got, d.prev) {
		t.Fatalf("litestream restore: %d bytes differ from the %d expected", len(got), len(d.prev))
	}
	if got := litestreamRestore(t, replica, 4); !bytes.Equal(got, d.history[4]) {
		t.Fatalf("litestream restore -txid 4: %d bytes differ from the %d expected", len(got), len(d.history[4]))
	}
}

// TestFileBackendMigratesOldLayout opens a file bucket written in the
// layout of earlier versions (<db>/<level %04x>/<file>): its files move to
// Litestream's layout, and Ferry and Litestream restore it, and the
// history carries on.
func TestFileBackendMigratesOldLayout(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "bucket")
	b, err := NewFileBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, testOptions())
	d := newTestDB(t, layout, "t/a.db")
	for i := 0; i < 4; i++ {
		d.insert(20, 100)
		if err := r.Sync(ctx, d.name); err != nil {
			t.Fatal(err)
		}
	}
	// Put every LTX file where earlier versions kept it, with a leftover
	// temporary file beside them.
	moved := 0
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".ltx") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		old := filepath.Join(root, filepath.FromSlash(fileKey(filepath.ToSlash(rel))))
		if old == p {
			t.Fatalf("%s is not in the ltx/<level> layout", rel)
		}
		if err := os.MkdirAll(filepath.Dir(old), 0o755); err != nil {
			return err
		}
		moved++
		return os.Rename(p, old)
	})
	if err != nil || moved != 4 {
		t.Fatalf("moved %d files: %v", moved, err)
	}
	if err := os.RemoveAll(filepath.Join(root, "t", "a.db", "ltx")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "t", "a.db", "0000", tmpPrefix+"x"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}

	b2, err := NewFileBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(root, "t", "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "ferry-head.json ltx" {
		t.Fatalf("after opening, the database's directory holds %v", names)
	}
	replica := filepath.Join(root, "t", "a.db")
	if got := litestreamRestore(t, replica, 0); !bytes.Equal(got, d.prev) {
		t.Fatal("litestream restore of the moved files differs")
	}

	// The history continues on the moved files.
	r2 := New(b2, layout, testOptions())
	d.insert(20, 100)
	if err := r2.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r2.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v, want %v", pos, err, d.pos)
	}
	mustEqualFile(t, out, d.prev)
	if got := litestreamRestore(t, replica, 0); !bytes.Equal(got, d.prev) {
		t.Fatal("litestream restore after another upload differs")
	}
	if dbs, err := r2.bucket.Databases(ctx); err != nil || len(dbs) != 1 || dbs[0] != d.name {
		t.Fatalf("databases %v %v", dbs, err)
	}
}

// TestFileBackendRemovesAbandonedTempFiles: a writer killed mid-upload
// leaves its temporary file behind; listing removes it once it is
// clearly abandoned, and never one that may still be written.
func TestFileBackendRemovesAbandonedTempFiles(t *testing.T) {
	root := t.TempDir()
	b, err := NewFileBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Put(ctx, "a.db/0000000000000001-0000000000000001.ltx", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := b.List(ctx, "a.db/")
	if err != nil || len(objs) != 1 {
		t.Fatalf("list: %v %v", objs, err)
	}
	file, err := b.path(objs[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(file)
	old, fresh := filepath.Join(dir, tmpPrefix+"old"), filepath.Join(dir, tmpPrefix+"fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * abandonedAfter)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	if objs, err := b.List(ctx, "a.db/"); err != nil || len(objs) != 1 {
		t.Fatalf("list with temporary files: %v %v", objs, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("abandoned temporary file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("recent temporary file removed: %v", err)
	}
}
