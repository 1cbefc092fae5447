package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EReplicaFollowsBucket runs two nodes over one bucket, with node a
// the static primary: node b restores a's database on first open, follows
// a's later writes through the bucket, and refuses writes of its own.
func TestE2EReplicaFollowsBucket(t *testing.T) {
	bucket := filepath.Join(t.TempDir(), "bucket")
	cfg := func(node string) string {
		return fmt.Sprintf("lease:\n  node: %s\n  static:\n    primary: a\n"+
			"bucket:\n  type: file\n  path: %q\n  upload-interval: 100ms\n  follow-interval: 100ms\n", node, bucket)
	}
	a := startMountWith(t, cfg("a"))
	b := startMountWith(t, cfg("b"))

	sqlite := func(m *testMount, sql string) (string, error) {
		out, err := exec.Command("sqlite3", m.Path("shop.db"), sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := sqlite(a, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("write on a: %v %s", err, out)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s\nnode a:\n%s\nnode b:\n%s", what, a.output, b.output)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Once a has uploaded, the first open on b restores from the bucket.
	// (Opening earlier would create a new, empty file on b.)
	waitFor("a never uploaded shop.db", func() bool {
		m, _ := filepath.Glob(filepath.Join(bucket, "shop.db", "ltx", "0", "*.ltx"))
		return len(m) > 0
	})
	waitFor("b never restored shop.db", func() bool {
		out, err := sqlite(b, "SELECT count(*) FROM t")
		return err == nil && out == "1"
	})

	if out, err := sqlite(a, "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);"); err != nil {
		t.Fatalf("write on a: %v %s", err, out)
	}
	waitFor("b never followed a's later writes", func() bool {
		out, err := sqlite(b, "SELECT count(*) FROM t")
		return err == nil && out == "3"
	})

	// A WAL connection that created the -wal file itself sees the refusal
	// as an I/O error rather than SQLITE_READONLY (see package fuse).
	out, err := sqlite(b, "INSERT INTO t VALUES (4)")
	if lo := strings.ToLower(out); err == nil || !strings.Contains(lo, "readonly") && !strings.Contains(lo, "disk i/o error") {
		t.Fatalf("write on the replica: err %v, output %q; want a read-only error", err, out)
	}
	if out, _ := sqlite(b, "SELECT count(*) FROM t"); out != "3" {
		t.Fatalf("replica has %s rows after its refused write, want 3", out)
	}
	if out, _ := sqlite(a, "SELECT count(*) FROM t"); out != "3" {
		t.Fatalf("primary has %s rows after a refused replica write, want 3", out)
	}
}
