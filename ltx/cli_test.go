package ltx_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/ltx"
	_ "github.com/mattn/go-sqlite3"
)

// ltxCLI returns the path of superfly/ltx's command-line tool, installed by
// scripts/setup.d/10-ltx.sh. Under CI it must be present.
func ltxCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("ltx"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "ltx")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("ltx CLI not found; run scripts/setup.d/10-ltx.sh")
	}
	t.Skip("ltx CLI not found; run scripts/setup.d/10-ltx.sh")
	return ""
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ltx %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sqliteExec runs stmts against a real SQLite database, creating it if needed.
func sqliteExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_journal_mode=DELETE")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// readPages splits a database file into pages.
func readPages(t *testing.T, path string, pageSize int) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%pageSize != 0 {
		t.Fatalf("%s is %d bytes, not whole pages", path, len(b))
	}
	var pages [][]byte
	for i := 0; i < len(b); i += pageSize {
		pages = append(pages, b[i:i+pageSize])
	}
	return pages
}

// TestCLI_FerryFilesWithSuperflyTool writes LTX files for a real SQLite
// database with Ferry and checks them with superfly/ltx's tool: verify,
// apply and checksum must all agree with Ferry.
func TestCLI_FerryFilesWithSuperflyTool(t *testing.T) {
	bin := ltxCLI(t)
	dir := t.TempDir()
	const pageSize = 4096
	src := filepath.Join(dir, "src.db")
	sqliteExec(t, src,
		fmt.Sprintf("PRAGMA page_size=%d", pageSize),
		"CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000) INSERT INTO t SELECT i, printf('row-%d-%s', i, hex(randomblob(20))) FROM n",
	)
	v1 := readPages(t, src, pageSize)

	// TXID 1: a snapshot of the database.
	var snap []testPage
	for i, p := range v1 {
		snap = append(snap, testPage{uint32(i + 1), p})
	}
	snapFile := filepath.Join(dir, ltx.FormatFilename(1, 1))
	writeFile(t, snapFile, encodeFile(t, ltx.Header{Version: 3, PageSize: pageSize, Commit: uint32(len(v1)), MinTXID: 1, MaxTXID: 1, Timestamp: 1}, snap, 0))

	// TXID 2: the pages a change touched.
	sqliteExec(t, src,
		"UPDATE t SET v = 'changed' WHERE id % 7 = 0",
		"WITH RECURSIVE n(i) AS (SELECT 3001 UNION ALL SELECT i+1 FROM n WHERE i < 4000) INSERT INTO t SELECT i, hex(randomblob(64)) FROM n",
	)
	v2 := readPages(t, src, pageSize)
	var changed []testPage
	for i, p := range v2 {
		if i >= len(v1) || !bytes.Equal(p, v1[i]) {
			changed = append(changed, testPage{uint32(i + 1), p})
		}
	}
	pre, err := ltx.ChecksumDatabase(bytes.NewReader(bytes.Join(v1, nil)), pageSize, uint32(len(v1)))
	if err != nil {
		t.Fatal(err)
	}
	post, err := ltx.ChecksumDatabase(bytes.NewReader(bytes.Join(v2, nil)), pageSize, uint32(len(v2)))
	if err != nil {
		t.Fatal(err)
	}
	incFile := filepath.Join(dir, ltx.FormatFilename(2, 2))
	writeFile(t, incFile, encodeFile(t, ltx.Header{Version: 3, PageSize: pageSize, Commit: uint32(len(v2)), MinTXID: 2, MaxTXID: 2, Timestamp: 2, PreApplyChecksum: pre}, changed, post))

	// TXID 1-2 compacted.
	var compacted bytes.Buffer
	a, _ := os.Open(snapFile)
	defer a.Close()
	b, _ := os.Open(incFile)
	defer b.Close()
	if err := ltx.Compact(&compacted, a, b); err != nil {
		t.Fatal(err)
	}
	compFile := filepath.Join(dir, "compacted.ltx")
	writeFile(t, compFile, compacted.Bytes())

	if out := runCLI(t, bin, "verify", snapFile, incFile, compFile); !strings.Contains(out, "ok") {
		t.Fatalf("verify: %s", out)
	}
	want, _ := os.ReadFile(src)
	for _, files := range [][]string{{snapFile, incFile}, {compFile}} {
		out := filepath.Join(t.TempDir(), "out.db")
		runCLI(t, bin, append([]string{"apply", "-db", out}, files...)...)
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Fatalf("ltx apply %v: database differs", files)
		}
		cli := strings.TrimSpace(runCLI(t, bin, "checksum", out))
		if cli != post.String() {
			t.Fatalf("ltx checksum = %s, Ferry = %s", cli, post)
		}
		var n int
		db, _ := sql.Open("sqlite3", out)
		if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 4000 {
			t.Fatalf("applied database: %d rows, %v", n, err)
		}
		db.Close()
	}

	// Ferry's Apply gives the same database and checksum.
	out := filepath.Join(dir, "ferry.db")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range []string{snapFile, incFile} {
		r, _ := os.Open(p)
		_, _, err := ltx.Apply(context.Background(), f, r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatal("Ferry apply: database differs")
	}
}

// TestCLI_SuperflyFilesWithFerry has superfly/ltx's tool encode a real
// database and checks Ferry decodes and applies it to the same bytes.
func TestCLI_SuperflyFilesWithFerry(t *testing.T) {
	bin := ltxCLI(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	sqliteExec(t, src,
		"PRAGMA page_size=8192",
		"CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t SELECT i, randomblob(300) FROM n",
	)
	snapFile := filepath.Join(dir, "snap.ltx")
	runCLI(t, bin, "encode-db", "-o", snapFile, src)

	r, err := os.Open(snapFile)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := os.Create(filepath.Join(dir, "out.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	hdr, tr, err := ltx.Apply(context.Background(), out, r)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, want) {
		t.Fatal("database differs")
	}
	cli := strings.TrimSpace(runCLI(t, bin, "checksum", src))
	if cli != tr.PostApplyChecksum.String() || hdr.PageSize != 8192 {
		t.Fatalf("ltx checksum %s, Ferry %s", cli, tr.PostApplyChecksum)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
