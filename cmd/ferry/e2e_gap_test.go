package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// relaunchMount starts `ferry mount` again on a stopped mount's mount
// point, data directory and config, and stops it when the test ends.
func relaunchMount(t *testing.T, old *testMount) *testMount {
	t.Helper()
	m := &testMount{Dir: old.Dir, DataDir: old.DataDir, Config: old.Config, output: &syncBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(ferryBin, "mount", "-config", m.Config)
	m.cmd.Stdout, m.cmd.Stderr = m.output, m.output
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start ferry mount: %v", err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() { m.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(t, m.Dir) {
		select {
		case <-m.done:
			t.Fatalf("ferry mount exited before mounting %s: %v\noutput:\n%s", m.Dir, m.err, m.output)
		default:
		}
		if time.Now().After(deadline) {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			t.Fatalf("ferry mount did not mount %s within 20s\noutput:\n%s", m.Dir, m.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// waitBucketCaughtUp waits until `ferry status` shows the bucket at
// database name's local position.
func waitBucketCaughtUp(t *testing.T, m *testMount, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"status", "-config", m.Config}, &stdout, &stderr)
		if err == nil && lagIsZero(stdout.String(), name) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket never caught up with %s: %v\n%s%s\nmount output:\n%s", name, err, stdout.String(), stderr.String(), m.output)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// localLogGaps lists the TXID ranges missing between the files of
// database name's local LTX log, and the log's files.
func localLogGaps(t *testing.T, m *testMount, name string) (gaps, files []string) {
	t.Helper()
	ents, err := os.ReadDir(m.LTXDir(name))
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ min, max ltx.TXID }
	var spans []span
	for _, e := range ents {
		if min, max, err := ferry.ParseLTXFilename(e.Name()); err == nil {
			spans = append(spans, span{min, max})
			files = append(files, e.Name())
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].min < spans[j].min })
	for i := 1; i < len(spans); i++ {
		if spans[i].min > spans[i-1].max+1 {
			gaps = append(gaps, fmt.Sprintf("%s-%s", spans[i-1].max+1, spans[i].min-1))
		}
	}
	return gaps, files
}

// TestE2ELocalLogGapRefilled deletes a file from the middle of a stopped
// node's local LTX log. When the node starts again, the gap is refilled
// from the bucket: the log replays into the database again, and `ferry
// verify` passes.
func TestE2ELocalLogGapRefilled(t *testing.T) {
	// L1 compaction runs on wall-clock boundaries; one that fell inside
	// the test would merge every object into a file that also covers the
	// newest local file, which a refill never replaces.
	m := startMountWith(t, "bucket:\n  levels:\n    - {level: 1, interval: 24h}\n")
	const name = "gap.db"
	db := m.Path(name)
	sqlite := func(sql string) {
		t.Helper()
		if out, err := exec.Command("sqlite3", db, sql).CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v\n%s", err, out)
		}
	}
	sqlite("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	for round := 0; round < 3; round++ {
		for i := 0; i < 3; i++ {
			sqlite("INSERT INTO t(v) VALUES (hex(randomblob(300)))")
		}
		waitBucketCaughtUp(t, m, name)
	}
	m.stop(t)

	_, files := localLogGaps(t, m, name)
	if len(files) < 5 {
		t.Fatalf("local log has only %d files: %v", len(files), files)
	}
	victim := files[len(files)/2]
	if err := os.Remove(m.LTXDir(name) + "/" + victim); err != nil {
		t.Fatal(err)
	}
	if gaps, _ := localLogGaps(t, m, name); len(gaps) != 1 {
		t.Fatalf("gaps after removing %s: %v", victim, gaps)
	}

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"verify", "-config", m.Config, name}, &stdout, &stderr); err == nil || !strings.Contains(stdout.String(), "missing TXIDs") {
		t.Fatalf("ferry verify of a log with a gap: %v\n%s%s", err, stdout.String(), stderr.String())
	}

	m2 := relaunchMount(t, m)
	if gaps, files := localLogGaps(t, m2, name); len(gaps) != 0 {
		t.Fatalf("local log still misses TXIDs %v after a restart (log: %v)\nmount output:\n%s", gaps, files, m2.output)
	}
	if !strings.Contains(m2.output.String(), "refilled a gap") {
		t.Errorf("the refill was not logged:\n%s", m2.output)
	}
	checkReplay(t, m2, name)
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"verify", "-config", m2.Config, name}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	sqlite("INSERT INTO t(v) VALUES ('after')")
	waitBucketCaughtUp(t, m2, name)
}
