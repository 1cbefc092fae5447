package main

import (
	"fmt"
	"os"
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

// TestE2EReplicaStandInIsReplaced: an application on a node that has not
// heard yet that another node created a database opens it with O_CREAT,
// which leaves an empty local file in its place. Once the database is in
// the bucket, following it turns that file into the database, rather than
// letting it hide the database on this node for good. The stand-in is put
// in place directly here, since the window in which the mount creates one
// is a race with the lease table.
func TestE2EReplicaStandInIsReplaced(t *testing.T) {
	bucket := filepath.Join(t.TempDir(), "bucket")
	cfg := func(node string) string {
		return fmt.Sprintf("lease:\n  node: %s\n  static:\n    primary: a\n"+
			"bucket:\n  type: file\n  path: %q\n  upload-interval: 100ms\n  follow-interval: 100ms\n", node, bucket)
	}
	a := startMountWith(t, cfg("a"))
	if out, err := exec.Command("sqlite3", a.Path("late.db"), "CREATE TABLE t(x); INSERT INTO t VALUES (7);").CombinedOutput(); err != nil {
		t.Fatalf("write on a: %v %s", err, out)
	}
	b := newTestMount(t, cfg("b"))
	if err := os.MkdirAll(filepath.Dir(b.TreePath("late.db")), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.TreePath("late.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command("sqlite3", "-readonly", b.Path("late.db"), "SELECT x FROM t;").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "7" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node b still reads %q (%v) through its stand-in\nnode b:\n%s", out, err, b.output)
		}
	}
}
