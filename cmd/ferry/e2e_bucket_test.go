package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EBucketStatusAndRestore runs the whole default pipeline: an app
// writes through the mount, the change sets reach the default file bucket,
// `ferry status` reports the bucket caught up, and `ferry restore` rebuilds
// the database from the bucket alone.
func TestE2EBucketStatusAndRestore(t *testing.T) {
	m := startMount(t)
	db := m.Path("tenant-1.db")
	sql := "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
	for i := 0; i < 20; i++ {
		sql += "INSERT INTO t(v) VALUES (hex(randomblob(200)));"
	}
	if out, err := exec.Command("sqlite3", db, sql).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	want, err := exec.Command("sqlite3", db, "SELECT count(*), sum(length(v)) FROM t").Output()
	if err != nil {
		t.Fatal(err)
	}

	// The default upload interval is one second; wait until status shows
	// the bucket at the local position.
	deadline := time.Now().Add(20 * time.Second)
	var status string
	for {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"status", "-config", m.Config}, &stdout, &stderr)
		status = stdout.String()
		if err == nil && strings.Contains(status, "tenant-1.db") && lagIsZero(status, "tenant-1.db") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket never caught up: err=%v\n%s%s\nmount output:\n%s", err, status, stderr.String(), m.output)
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.stop(t)

	if ents, err := os.ReadDir(filepath.Join(m.DataDir, "bucket", "tenant-1.db", "ltx", "0")); err != nil || len(ents) == 0 {
		t.Fatalf("no L0 files in the default bucket: %v", err)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"restore", "-config", m.Config, "-o", out, "tenant-1.db"}, &stdout, &stderr); err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr.String())
	}
	got, err := exec.Command("sqlite3", out, "SELECT count(*), sum(length(v)) FROM t").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("restored database has %q, want %q", got, want)
	}

	// Stock Litestream reads the default file bucket as its file replica.
	ls := filepath.Join(t.TempDir(), "litestream.db")
	replica := "file://" + filepath.Join(m.DataDir, "bucket", "tenant-1.db")
	if out, err := exec.Command(litestreamPath(t), "restore", "-o", ls, replica).CombinedOutput(); err != nil {
		t.Fatalf("litestream restore %s: %v\n%s", replica, err, out)
	}
	if got, _ := os.ReadFile(ls); !bytes.Equal(got, mustRead(t, out)) {
		t.Fatal("litestream restore of the file bucket differs from ferry restore's")
	}
}

// mustRead returns the content of the file at path.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// lagIsZero reports whether the status table's line for name ends in a lag
// of zero.
func lagIsZero(status, name string) bool {
	for _, line := range strings.Split(status, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return f[len(f)-1] == "0"
		}
	}
	return false
}
