package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/s3test"
)

// startSyncMount starts a single node whose bucket is a real S3 server and
// whose databases under sync/ are synchronous. Uploads otherwise happen
// only once an hour, so whatever the bucket holds right after a commit was
// put there by the synchronous wait.
func startSyncMount(t *testing.T) (*testMount, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	m := startMountWith(t, fmt.Sprintf(`bucket:
  type: s3
  bucket: %s
  endpoint: %q
  region: auto
  force-path-style: true
  upload-interval: 1h
  follow-interval: -1s
  synchronous: ["sync/*.db"]
`, srv.Bucket, srv.Endpoint))
	if err := os.Mkdir(m.Path("sync"), 0o755); err != nil {
		t.Fatal(err)
	}
	return m, srv
}

// restoreRows restores database name from m's bucket and returns its
// rows of t, or the restore's error.
func restoreRows(t *testing.T, m *testMount, name string) (string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"restore", "-config", m.Config, "-q", "-o", out, name}, &stdout, &stderr); err != nil {
		return "", fmt.Errorf("%w: %s", err, stderr.String())
	}
	return strings.TrimSpace(runSQLiteCLI(t, out, "SELECT group_concat(id) FROM t;")), nil
}

// TestE2ESynchronousCommitSurvivesKill commits to synchronous databases in
// DELETE, TRUNCATE, PERSIST and WAL (synchronous=FULL) mode, kills the node
// with -9 right after each commit returns, and restores from the bucket
// alone: every acknowledged row is there. An ordinary database written the
// same way is not in the bucket at all, which shows that only the
// synchronous wait put the others there.
func TestE2ESynchronousCommitSurvivesKill(t *testing.T) {
	m, _ := startSyncMount(t)
	modes := map[string]string{
		"sync/delete.db":   "PRAGMA journal_mode=DELETE;",
		"sync/truncate.db": "PRAGMA journal_mode=TRUNCATE;",
		"sync/persist.db":  "PRAGMA journal_mode=PERSIST;",
		"sync/wal.db":      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
		"plain.db":         "PRAGMA journal_mode=DELETE;",
	}
	for name, pragmas := range modes {
		runSQLiteCLI(t, m.Path(name), pragmas+"CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
	}
	if err := m.kill(); err != nil {
		t.Fatal(err)
	}
	for name := range modes {
		rows, err := restoreRows(t, m, name)
		switch {
		case name == "plain.db":
			if err == nil {
				t.Fatalf("%s, not synchronous, restored from a bucket it was never uploaded to: rows %q", name, rows)
			}
		case err != nil:
			t.Fatalf("%s: restore after kill -9: %v\nmount output:\n%s", name, err, m.output)
		case rows != "1,2":
			t.Fatalf("%s: the bucket has rows %q after kill -9, want 1,2", name, rows)
		}
	}
}

// TestE2ESynchronousCommitWaitsForBucket stops the S3 server and commits to
// a synchronous database: the commit does not return while uploads fail,
// and returns once the server is back, with the row in the bucket. An
// ordinary database's commits go on meanwhile.
func TestE2ESynchronousCommitWaitsForBucket(t *testing.T) {
	m, srv := startSyncMount(t)
	const name = "sync/wait.db"
	runSQLiteCLI(t, m.Path(name), "CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
	runSQLiteCLI(t, m.Path("plain.db"), "CREATE TABLE t(id INTEGER PRIMARY KEY);")

	srv.Stop()
	failures := strings.Count(m.output.String(), "replication failed")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		out, err := exec.CommandContext(ctx, "sqlite3", m.Path(name), "INSERT INTO t VALUES (2);").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); strings.Count(m.output.String(), "replication failed") <= failures; {
		if time.Now().After(deadline) {
			t.Fatalf("no upload failed within a minute of stopping the bucket\n%s", m.output)
		}
		select {
		case err := <-done:
			t.Fatalf("synchronous commit returned (%v) before any upload of it succeeded", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Ordinary databases are not held up.
	runSQLiteCLI(t, m.Path("plain.db"), "INSERT INTO t VALUES (1);")
	select {
	case err := <-done:
		t.Fatalf("synchronous commit returned (%v) while the bucket was down", err)
	default:
	}

	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("synchronous commit after the bucket came back: %v\n%s", err, m.output)
		}
	case <-time.After(time.Minute):
		t.Fatalf("synchronous commit still waiting a minute after the bucket came back\n%s", m.output)
	}
	if err := m.kill(); err != nil {
		t.Fatal(err)
	}
	rows, err := restoreRows(t, m, name)
	if err != nil || rows != "1,2" {
		t.Fatalf("bucket after the wait: rows %q, %v; want 1,2", rows, err)
	}
}
