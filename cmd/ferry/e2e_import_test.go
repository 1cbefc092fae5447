package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
)

// sqliteFile makes a SQLite database at path by running sql on it.
func sqliteFile(t *testing.T, path, sql string) {
	t.Helper()
	if out, err := exec.Command("sqlite3", path, sql).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", path, err, out)
	}
}

// sqliteQuery runs sql on database name through the mount.
func sqliteQuery(t *testing.T, m *testMount, name, sql string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", m.Path(name), sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// readPos reads a database's position from .ferry/pos in the mount.
func readPos(t *testing.T, m *testMount, name string) ferry.Pos {
	t.Helper()
	b, err := os.ReadFile(m.Path(".ferry/pos/" + name))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := ferry.ParsePos(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func runImportCmd(m *testMount, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"import", "-config", m.Config}, args...), &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

// TestE2EImport takes SQLite files into a running mount, as a new
// database and as an existing one's next change set, and refuses files
// that are not SQLite databases.
func TestE2EImport(t *testing.T) {
	m := startMountWith(t, "bucket:\n  upload-interval: 100ms\n")
	src := t.TempDir()

	first := filepath.Join(src, "first.db")
	sqliteFile(t, first, "CREATE TABLE t(x, y); INSERT INTO t VALUES (1, 'a'), (2, 'b'); CREATE INDEX ty ON t(y);")
	out, err := runImportCmd(m, "imp/a.db", first)
	if err != nil || !strings.Contains(out, "the bucket holds imp/a.db") {
		t.Fatalf("import: %v\n%s\n%s", err, out, m.output)
	}
	if got := sqliteQuery(t, m, "imp/a.db", "SELECT group_concat(x || y) FROM t"); got != "1a,2b" {
		t.Fatalf("after the first import: %q", got)
	}
	pos1 := readPos(t, m, "imp/a.db")

	// An existing database: the file replaces its content in one change set.
	second := filepath.Join(src, "second.db")
	sqliteFile(t, second, "CREATE TABLE u(z); INSERT INTO u VALUES (42);")
	if out, err := runImportCmd(m, "imp/a.db", second); err != nil {
		t.Fatalf("second import: %v\n%s", err, out)
	}
	if got := sqliteQuery(t, m, "imp/a.db", "SELECT group_concat(name) FROM sqlite_schema; SELECT z FROM u"); got != "u\n42" {
		t.Fatalf("after the second import: %q", got)
	}
	if pos2 := readPos(t, m, "imp/a.db"); pos2.TXID != pos1.TXID+1 {
		t.Fatalf("second import: TXID %d -> %d, want one change set", pos1.TXID, pos2.TXID)
	}
	rep, err := clusterStatus(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Databases {
		if d.Name == "imp/a.db" && (d.Bucket == nil || *d.Bucket != readPos(t, m, "imp/a.db")) {
			t.Fatalf("bucket %v, local %v", d.Bucket, readPos(t, m, "imp/a.db"))
		}
	}

	// Bad input.
	text := filepath.Join(src, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(src, "corrupt.db")
	b, _ := os.ReadFile(first)
	for i := 100; i < len(b); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(corrupt, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"imp/b.db", text, "is not a SQLite database"},
		{"imp/b.db", filepath.Join(src, "missing.db"), "no such file"},
		{"imp/b.db", corrupt, "corrupt.db"},
		{"../b.db", first, "invalid"},
	} {
		out, err := runImportCmd(m, tc.name, tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("import %s %s: err %v, want %q\n%s", tc.name, tc.file, err, tc.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "imp", "b.db")); !os.IsNotExist(err) {
		t.Fatalf("a refused import left imp/b.db behind: %v", err)
	}
}
