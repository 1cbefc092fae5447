package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashWriterProgram writes rows through the mount with synchronous=FULL
// until it is killed, and appends the ids of every transaction SQLite
// acknowledged to a ledger outside the mount, synced before the next
// transaction begins. Transactions insert one to three rows of varied size
// (some span overflow pages) and sometimes rewrite an older row, so that
// commits touch scattered pages. With a checkpoint period it runs
// PRAGMA wal_checkpoint(TRUNCATE) every that many commits, printing
// "checkpoint" just before and "checkpointed" just after.
const crashWriterProgram = `
import os, random, sqlite3, sys
path, ledger_path, mode, start, seed, every = sys.argv[1:7]
rnd, next_id, every = random.Random(int(seed)), int(start), int(every)
db = sqlite3.connect(path, isolation_level=None, timeout=10)
got = db.execute("PRAGMA journal_mode=%s" % mode).fetchone()[0]
if got.upper() != mode:
    sys.exit("journal_mode is %s, want %s" % (got, mode))
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
print("ready", flush=True)
n = 0
while True:
    ids = list(range(next_id, next_id + rnd.randint(1, 3)))
    db.execute("BEGIN IMMEDIATE")
    for i in ids:
        db.execute("INSERT INTO t VALUES (?, randomblob(?))", (i, rnd.choice([10, 200, 1500, 6000])))
    if rnd.random() < 0.25 and next_id > 1:
        db.execute("UPDATE t SET v = randomblob(?) WHERE id = ?", (rnd.choice([10, 500]), rnd.randint(1, next_id - 1)))
    db.execute("COMMIT")
    os.write(ledger, "".join("%d\n" % i for i in ids).encode())
    os.fsync(ledger)
    next_id += len(ids)
    n += 1
    if every and n % every == 0:
        print("checkpoint", flush=True)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print("checkpointed", flush=True)
`

// crashWriter is a running crashWriterProgram.
type crashWriter struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	lines  chan string   // what it printed, line by line; closed at its exit
	done   chan struct{} // closed once cmd.Wait has returned
	stderr *syncBuffer
	last   string // the last line taken from lines
}

// startCrashWriter starts the writer on the database at path in journal
// mode mode, with ids from start, and waits until it has set the database
// up. checkpointEvery is the checkpoint period in commits, 0 for none.
func startCrashWriter(t *testing.T, path, ledger, mode string, start, seed int64, checkpointEvery int) *crashWriter {
	t.Helper()
	// The context only bounds a writer that the test never got to kill.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, "python3", "-c", crashWriterProgram, path, ledger, mode,
		strconv.FormatInt(start, 10), strconv.FormatInt(seed, 10), strconv.Itoa(checkpointEvery))
	w := &crashWriter{cmd: cmd, cancel: cancel, lines: make(chan string, 1024), done: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = w.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start writer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		_ = cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		_ = killProcess(cmd, w.done)
		cancel()
	})
	if err := w.waitFor("ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor waits until the writer prints line.
func (w *crashWriter) waitFor(line string, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case got, ok := <-w.lines:
			if !ok {
				<-w.done
				return fmt.Errorf("writer exited (%v) before printing %q:\n%s", w.cmd.ProcessState, line, w.stderr)
			}
			w.last = got
			if got == line {
				return nil
			}
		case <-timer.C:
			return fmt.Errorf("writer did not print %q within %v:\n%s", line, timeout, w.stderr)
		}
	}
}

// kill ends the writer with SIGKILL and reports whether it was in the
// middle of a checkpoint: it printed "checkpoint" but not "checkpointed".
func (w *crashWriter) kill() (inCheckpoint bool, err error) {
	if err := killProcess(w.cmd, w.done); err != nil {
		return false, err
	}
	for line := range w.lines {
		w.last = line
	}
	w.cancel()
	return w.last == "checkpoint", nil
}

// readLedger returns the ids in a writer's ledger. Only complete lines
// count; the ledger may not exist yet when no commit was acknowledged.
func readLedger(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatalf("read ledger: %v", err)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	var ids []int64
	for _, f := range strings.Split(s, "\n") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("ledger %s: line %q: %v", path, f, err)
		}
		ids = append(ids, id)
	}
	return ids
}
