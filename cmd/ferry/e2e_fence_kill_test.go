package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killAndExpectExit kills m with SIGKILL and fails the test if the process
// does not exit promptly: a FUSE daemon that waits on its own mount as it
// dies never exits on its own.
func killAndExpectExit(t *testing.T, m *testMount) {
	t.Helper()
	if err := m.kill(); err != nil {
		t.Fatal(err)
	}
}

// closeWithin closes the application's connection and fails the test if
// its process does not exit in time: an application closing a file of a
// dead mount must get an error, not wait forever.
func (s *sqlShell) closeWithin(t *testing.T, d time.Duration) {
	t.Helper()
	s.in.Close()
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		_ = s.cmd.Process.Kill()
		t.Fatalf("the application did not exit within %v of closing its connection to the dead mount", d)
	}
}

// TestE2EKillWhileFencedAfterHandoff kills node1 with SIGKILL while it
// fences an application's WAL-mode connection after handing the lease off.
// The fence must not depend on the mount serving its own process: node1
// exits, and the application's close returns.
func TestE2EKillWhileFencedAfterHandoff(t *testing.T) {
	c := startRaftCluster(t, 2, "2s")
	nodes := c.nodes

	app := startSQLShell(t, nodes[0].Path("shop.db"))
	for _, stmt := range []string{"CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"} {
		if got := app.exec(t, stmt); got != "ok" {
			t.Fatalf("%s on node1: %s", stmt, got)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"handoff", "-config", nodes[0].Config, "shop.db", "node2"}, &stdout, &stderr); err != nil {
		t.Fatalf("handoff: %v\n%s\nnode1:\n%s", err, stderr.String(), nodes[0].output)
	}
	if got := app.exec(t, "INSERT INTO t VALUES (2)"); !strings.Contains(got, "locked") {
		t.Fatalf("write on node1 after the handoff: %q, want the database locked by the fence", got)
	}

	killAndExpectExit(t, nodes[0])
	app.closeWithin(t, 10*time.Second)
}

// TestE2EKillWhileFencedAfterENOSPC fills the file system that holds the
// local LTX log, so that a WAL commit cannot be captured and the database's
// writers are fenced; then it kills ferry mount with SIGKILL. The process
// must exit and the application's close must return.
func TestE2EKillWhileFencedAfterENOSPC(t *testing.T) {
	m := startMountOnSmallMeta(t)

	app := startSQLShell(t, m.Path("full.db"))
	for _, stmt := range []string{"CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"} {
		if got := app.exec(t, stmt); got != "ok" {
			t.Fatalf("%s: %s", stmt, got)
		}
	}
	fillDisk(t, filepath.Join(m.DataDir, "meta", "filler"), 64<<20)

	// Commits keep landing in the WAL, which has room; capturing them
	// fails for want of space, and the store then fences the writers.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := app.exec(t, "INSERT INTO t VALUES (randomblob(3000))")
		if strings.Contains(got, "locked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writers were never fenced after the log's file system filled up (last answer %q)\noutput:\n%s", got, m.output)
		}
		time.Sleep(20 * time.Millisecond)
	}

	killAndExpectExit(t, m)
	app.closeWithin(t, 10*time.Second)
}

// startMountOnSmallMeta starts a mount whose data directory keeps its meta
// directory (positions and the local LTX log) on a small tmpfs of its own,
// so that a test can run it out of space without touching the databases.
func startMountOnSmallMeta(t *testing.T) *testMount {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	meta := filepath.Join(data, "meta")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", meta, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a tmpfs for the local log: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(meta, syscall.MNT_DETACH) })
	return startMountAt(t, data, "")
}
