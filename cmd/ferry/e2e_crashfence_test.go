package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// defaultFenceCycles is how many fence kills TestE2ECrashFence makes
// unless FERRY_CRASH_CYCLES says otherwise: each needs a Raft cluster of
// its own, which costs seconds to start.
const defaultFenceCycles = 3

// TestE2ECrashFence kills a node while it fences a WAL-mode writer. In a
// two-node Raft cluster, a writer on node1 keeps committing with its WAL
// passed through; handing the lease to node2 makes node1 fence the writer
// (hold SQLite's WAL write lock through its own mount) and drain. The
// first cycle kills node1 once the handoff has returned, with the fence
// certainly up; the others kill it at a random moment during the handoff.
// Then node1 restarts and the database is checked as in the crash suite.
func TestE2ECrashFence(t *testing.T) {
	cycles := defaultFenceCycles
	if os.Getenv("FERRY_CRASH_CYCLES") != "" {
		cycles = crashCycles(t)
	}
	rnd := rand.New(rand.NewPCG(uint64(crashSeed(t)), 1))
	for cycle := range cycles {
		seed, delay := rnd.Int64(), time.Duration(rnd.IntN(60))*time.Millisecond
		t.Run(fmt.Sprintf("cycle%d", cycle), func(t *testing.T) {
			crashDuringFence(t, seed, cycle == 0, delay)
		})
	}
}

// crashDuringFence runs one fence cycle: afterHandoff kills node1 once the
// handoff returned, otherwise delay after it began.
func crashDuringFence(t *testing.T, seed int64, afterHandoff bool, delay time.Duration) {
	const name = "fenced.db"
	c := startRaftCluster(t, 2, "2s")
	node1 := c.nodes[0]
	ledger := filepath.Join(t.TempDir(), "ledger")
	w := startCrashWriter(t, node1.Path(name), ledger, "WAL", 1, seed, 0)
	time.Sleep(200 * time.Millisecond)

	handoff := make(chan error, 1)
	var handoffOut bytes.Buffer
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var stdout bytes.Buffer
		handoff <- run(ctx, []string{"handoff", "-config", node1.Config, name, "node2"}, &stdout, &handoffOut)
	}()
	if afterHandoff {
		select {
		case err := <-handoff:
			if err != nil {
				t.Fatalf("handoff: %v\n%s\nnode1:\n%s", err, handoffOut.String(), node1.output)
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("handoff did not return within 40s\nnode1:\n%s", node1.output)
		}
	} else {
		time.Sleep(delay)
	}
	// A process that hangs after SIGKILL has been freed by the time kill
	// returns; the cycle goes on, so that its checks still run.
	if err := node1.kill(); err != nil {
		t.Errorf("kill node1 while it fences a WAL writer: %v\nnode1 output:\n%s", err, node1.output)
	}
	if _, err := w.kill(); err != nil {
		t.Fatal(err)
	}
	drained := afterHandoff
	if !afterHandoff {
		select {
		case err := <-handoff:
			t.Logf("killed node1 %v after the handoff began; the handoff returned %v", delay, err)
			drained = err == nil
		case <-time.After(40 * time.Second):
			t.Fatal("handoff did not return within 40s of node1's death")
		}
	}
	t.Logf("killed node1 after %d acknowledged rows", len(readLedger(t, ledger)))

	// A handoff that returned has drained: the bucket must then hold
	// every acknowledged row. A holder killed before its drain finished
	// may have acknowledged commits the bucket lacks (the loss window of
	// a failover); it ships them when it writes again, and the checks
	// after the restart require that.
	if drained {
		checkBucketHoldsAcked(t, c.bucket, node1.Config, name, ledger)
	}
	node1.restart(t)
	// node2 holds the lease now. The WAL can hold commits that the fenced
	// writer made after node1 died, when its fence went with it: node1
	// captures them at start, ahead of the bucket, and can ship them
	// only once it holds the lease again (were another node to write
	// first, they would be set aside as diverged). Hand the lease back.
	// node1 asks for it back while node2 holds it; while nobody does, its
	// write takes it. The first write may also find the catch-up still
	// running and fail as read-only; a later one goes through.
	c.waitFor("node1 never wrote after taking the lease back", func() bool {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"handoff", "-config", c.nodes[1].Config, name, "node1"}, &stdout, &stderr); err != nil {
			t.Logf("handoff back to node1: %v", err)
		}
		out, err := runBounded(node1, 30*time.Second, "sqlite3", "-cmd", ".timeout 5000", node1.Path(name), "PRAGMA user_version = 1;")
		if err != nil {
			t.Logf("write on node1: %v %s", err, out)
		}
		return err == nil
	})
	checkAfterCrash(t, node1, name, ledger, c.bucket)
}

// checkBucketHoldsAcked restores database name from the bucket as it is
// right after the kill and requires every acknowledged row in it: once a
// handoff has drained, the bucket is the history the next holder carries
// on from, so a row missing there is an acknowledged commit that the
// cluster loses.
func checkBucketHoldsAcked(t *testing.T, bucket, config, name, ledger string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bucket.db")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"restore", "-config", config, "-q", "-o", out, name}, &stdout, &stderr); err != nil {
		t.Logf("nothing to restore from the bucket after the kill: %v", err)
		return
	}
	ids := runSQLiteCLI(t, out, "SELECT id FROM t;")
	rows := make(map[string]bool)
	for _, id := range strings.Split(ids, "\n") {
		rows[id] = true
	}
	var missing []int64
	for _, id := range readLedger(t, ledger) {
		if !rows[strconv.FormatInt(id, 10)] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the bucket lacks %d acknowledged rows after node1 was killed (ids %v): they were committed on node1 and never reached the history the next holder continues", len(missing), missing)
	}
}
