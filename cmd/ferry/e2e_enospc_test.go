package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fillDisk writes path until the file system it is on has no room left,
// and returns how many bytes it wrote.
func fillDisk(t *testing.T, path string, limit int64) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{64 << 10, 4 << 10, 512, 1} {
		buf := bytes.Repeat([]byte{0xa5}, chunk)
		for n < limit {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			} else if err != nil {
				t.Fatalf("fill %s: %v", path, err)
			}
		}
	}
	if n >= limit {
		t.Fatalf("wrote %d bytes to %s without running out of space", n, path)
	}
	return n
}

// smallDisk is the size of the tmpfs startSmallDiskMount puts the data
// directory on.
const smallDisk = 16 << 20

// startSmallDiskMount starts a mount whose data directory is a tmpfs of
// smallDisk bytes, unmounted when the test ends.
func startSmallDiskMount(t *testing.T) *testMount {
	t.Helper()
	m := newTestMount(t, "")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", smallDisk), "ferry-enospc", m.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	// Registered before start, so it runs after the mount is stopped.
	t.Cleanup(func() {
		if err := syscall.Unmount(m.DataDir, 0); err != nil {
			t.Errorf("unmount tmpfs: %v", err)
			_ = syscall.Unmount(m.DataDir, syscall.MNT_DETACH)
		}
	})
	m.start(t)
	return m
}

// waitForLog waits up to 30 seconds for the mount to log msg.
func waitForLog(t *testing.T, m *testMount, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(m.output.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("the mount did not log %q within 30s\nmount output:\n%s", msg, m.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2EDiskFullRepair runs a mount whose data directory is a small
// tmpfs, fills it so that a commit cannot be captured, and checks that
// `ferry status` says why the database is read-only, and that once space
// is freed the database is repaired without a restart: it takes writes
// again and its log verifies.
func TestE2EDiskFullRepair(t *testing.T) {
	m := startSmallDiskMount(t)

	db := m.Path("full.db")
	// About 200 KiB of incompressible rows: more than a failed small
	// change set could free, so a repair cannot succeed before the
	// space is given back.
	runSQLiteCLI(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200)
INSERT INTO t(v) SELECT randomblob(1000) FROM n;`)

	filler := filepath.Join(m.DataDir, "filler")
	fillDisk(t, filler, smallDisk)

	// With the journal in memory, the commit rewrites pages the database
	// file already has, which needs no new space; capturing it does.
	cmd := exec.Command("sqlite3", "-bail", "-batch", db)
	cmd.Stdin = strings.NewReader("PRAGMA journal_mode=MEMORY;\nUPDATE t SET v = randomblob(1000) WHERE id = 7;\n")
	out, err := cmd.CombinedOutput()
	t.Logf("commit on a full disk: err %v\n%s", err, out)

	rep := statusJSON(t, m)
	d, ok := dbStatusOf(rep, "full.db")
	if !ok || d.State != "read-only" || !strings.Contains(d.Reason, "no space left on device") {
		t.Fatalf("full.db in status: %+v (listed %v); want read-only because no space is left\nmount output:\n%s", d, ok, m.output)
	}
	text := statusText(t, m)
	t.Logf("ferry status:\n%s", text)
	if !strings.Contains(text, "read-only") || !strings.Contains(text, "no space left on device") {
		t.Errorf("ferry status does not say why full.db is read-only:\n%s", text)
	}
	// Writes are refused meanwhile, as on a read-only database.
	if out, err := exec.Command("sqlite3", db, "INSERT INTO t(v) VALUES (x'00');").CombinedOutput(); err == nil {
		t.Errorf("a write to the broken database succeeded: %s", out)
	}

	// While the disk stays full, repairs fail and the database stays
	// read-only.
	waitForLog(t, m, "repair failed")
	if d, _ := dbStatusOf(statusJSON(t, m), "full.db"); d.State != "read-only" {
		t.Fatalf("full.db is %q after a failed repair, want read-only", d.State)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The repair is retried with a backoff of at most 10s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, _ := dbStatusOf(statusJSON(t, m), "full.db")
		logged := strings.Contains(m.output.String(), "repaired database")
		if d.State == "" && logged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after space was freed, full.db is %q (%s), repair logged: %v\nmount output:\n%s", d.State, d.Reason, logged, m.output)
		}
		time.Sleep(100 * time.Millisecond)
	}

	runSQLiteCLI(t, db, "INSERT INTO t(v) VALUES (randomblob(1000));")
	if got := runSQLiteCLI(t, db, "SELECT count(*) FROM t;"); got != "201" {
		t.Fatalf("full.db has %s rows after the repair and one insert, want 201", got)
	}
	integrityCheck(t, db)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"verify", "-config", m.Config, "full.db"}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	checkReplay(t, m, "full.db")
}

// TestE2EDiskFullRepairWAL is TestE2EDiskFullRepair for a WAL-mode
// connection that stays open, whose WAL is written past Ferry: when the
// commit cannot be captured its writers are fenced, and once the repair
// is done the same connection writes again.
func TestE2EDiskFullRepairWAL(t *testing.T) {
	m := startSmallDiskMount(t)
	app := startSQLShell(t, m.Path("wal.db"))
	for _, stmt := range []string{"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", "PRAGMA wal_autocheckpoint=0"} {
		if got := app.exec(t, stmt); got != "ok" {
			t.Fatalf("%s: %s", stmt, got)
		}
	}
	for i := 0; i < 100; i++ {
		if got := app.exec(t, "INSERT INTO t(v) VALUES (randomblob(1000))"); got != "ok" {
			t.Fatalf("insert: %s", got)
		}
	}
	// Once every frame is in the database the next commit starts the WAL
	// over, in space the file already has.
	if got := app.exec(t, "PRAGMA wal_checkpoint(PASSIVE)"); got != "ok" {
		t.Fatalf("checkpoint: %s", got)
	}
	filler := filepath.Join(m.DataDir, "filler")
	fillDisk(t, filler, smallDisk)
	if got := app.exec(t, "UPDATE t SET v = randomblob(1000) WHERE id = 7"); got != "ok" {
		t.Fatalf("update on a full disk: %s", got)
	}
	waitForLog(t, m, "fenced WAL writers")
	d, _ := dbStatusOf(statusJSON(t, m), "wal.db")
	if d.State != "read-only" || !strings.Contains(d.Reason, "no space left on device") {
		t.Fatalf("wal.db in status: %+v; want read-only because no space is left\nmount output:\n%s", d, m.output)
	}
	if got := app.exec(t, "INSERT INTO t(v) VALUES (x'00')"); !strings.Contains(got, "locked") {
		t.Fatalf("write while broken: %q, want the database locked", got)
	}
	waitForLog(t, m, "repair failed")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, m, "repaired database")
	waitForLog(t, m, "WAL writers may write again")
	if got := app.exec(t, "INSERT INTO t(v) VALUES (randomblob(1000))"); got != "ok" {
		t.Fatalf("write after the repair: %s\nmount output:\n%s", got, m.output)
	}
	if d, _ := dbStatusOf(statusJSON(t, m), "wal.db"); d.State != "" {
		t.Fatalf("wal.db is %s after the repair: %s", d.State, d.Reason)
	}
	if got := app.exec(t, "PRAGMA wal_checkpoint(TRUNCATE)"); got != "ok" {
		t.Fatalf("checkpoint: %s", got)
	}
	// Closing this connection also writes the last change sets to the log.
	if got := runSQLiteCLI(t, m.Path("wal.db"), "SELECT count(*) FROM t;"); got != "101" {
		t.Fatalf("wal.db has %s rows, want 101", got)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"verify", "-config", m.Config, "wal.db"}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry verify: %v\n%s%s\nmount output:\n%s", err, stdout.String(), stderr.String(), m.output)
	}
	t.Logf("mount output:\n%s", m.output)
}
