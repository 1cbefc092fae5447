package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EWriteOutsideTransactionSurvivesRestart writes 16 bytes into page 5
// of a DELETE-mode database through the mount with dd, outside any SQLite
// transaction, and restarts Ferry cleanly. The write must become a change
// set of its own, so that the log, the bucket and a restore agree with the
// live file byte for byte, and a later SQLite commit chains onto it.
func TestE2EWriteOutsideTransactionSurvivesRestart(t *testing.T) {
	m := startMount(t)
	const name = "dd.db"
	db := m.Path(name)
	script := "PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
	for i := 0; i < 30; i++ {
		script += "INSERT INTO t(v) VALUES (randomblob(1000));"
	}
	runSQLiteCLI(t, db, script)
	before := readPosTXID(t, m, name)

	// The last bytes of a leaf page are the tail of a row's blob: changing
	// them leaves the database consistent for SQLite.
	dd := exec.Command("dd", "of="+db, "bs=16", "count=1", "conv=notrunc",
		"oflag=seek_bytes", "seek="+strconv.Itoa(5*4096-16))
	dd.Stdin = strings.NewReader("written by dd!!\n")
	out, err := dd.CombinedOutput()
	if err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	if after := readPosTXID(t, m, name); after != before+1 {
		t.Errorf("position after dd is TXID %d, want %d (one change set for the write)", after, before+1)
	}

	m.restart(t)
	verifyAndRestore(t, m, name, m.TreePath(name))

	runSQLiteCLI(t, db, "INSERT INTO t(v) VALUES (randomblob(1000));")
	integrityCheck(t, db)
	verifyAndRestore(t, m, name, m.TreePath(name))
	checkReplay(t, m, name)
}

// TestE2ECopiedInDatabase copies a SQLite database into the mount with cp:
// it must be captured as the first change set as soon as the copy is
// closed, verify, and restore from the bucket.
func TestE2ECopiedInDatabase(t *testing.T) {
	m := startMount(t)
	src := filepath.Join(t.TempDir(), "src.db")
	script := "PRAGMA page_size=1024; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
	for i := 0; i < 50; i++ {
		script += "INSERT INTO t(v) VALUES (randomblob(300));"
	}
	runSQLiteCLI(t, src, script)

	const name = "copied/in.db"
	if err := os.MkdirAll(m.Path("copied"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", src, m.Path(name)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if txid := readPosTXID(t, m, name); txid == 0 {
		t.Fatalf("copied database has position 0 after cp")
	}
	verifyAndRestore(t, m, name, src)
	integrityCheck(t, m.Path(name))
}

// readPosTXID reads a database's TXID from .ferry/pos in the mount.
func readPosTXID(t *testing.T, m *testMount, name string) uint64 {
	t.Helper()
	b, err := os.ReadFile(m.Path(".ferry/pos/" + name))
	if err != nil {
		t.Fatalf("read position of %s: %v", name, err)
	}
	txid, _, _ := strings.Cut(strings.TrimSpace(string(b)), "/")
	n, err := strconv.ParseUint(txid, 16, 64)
	if err != nil {
		t.Fatalf("position of %s is %q: %v", name, b, err)
	}
	return n
}

// verifyAndRestore runs `ferry verify` on name, waits until the bucket
// holds its local position, and checks that `ferry restore` rebuilds a
// file equal, byte for byte, to want.
func verifyAndRestore(t *testing.T, m *testMount, name, want string) {
	t.Helper()
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"verify", "-config", m.Config, name}, &stdout, &stderr); err != nil {
		t.Fatalf("verify: %v\n%s%s\nmount output:\n%s", err, stdout.String(), stderr.String(), m.output)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		stdout.Reset()
		stderr.Reset()
		err := run(ctx, []string{"status", "-config", m.Config}, &stdout, &stderr)
		if err == nil && lagIsZero(stdout.String(), name) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket never caught up: err=%v\n%s%s\nmount output:\n%s", err, stdout.String(), stderr.String(), m.output)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	stderr.Reset()
	if err := run(ctx, []string{"restore", "-config", m.Config, "-o", out, name}, &stdout, &stderr); err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	live, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, live) {
		t.Fatalf("restored %s differs from the live file: %d bytes against %d, first difference at %d",
			name, len(got), len(live), firstDiff(got, live))
	}
}
