package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The crash suite kills `ferry mount` with SIGKILL at random moments while
// a separate process writes through the mount with synchronous=FULL, then
// restarts it on the same data directory and bucket and checks that
// nothing acknowledged was lost and that every copy of the database (the
// live file, the local LTX log, the bucket, a restore) still agrees. The
// kill schedule is random but seeded: the seed is logged, and
// FERRY_CRASH_SEED replays it. FERRY_CRASH_CYCLES raises the number of
// kills per run above the default.

// defaultCrashCycles is how many kills each run of the suite makes unless
// FERRY_CRASH_CYCLES says more.
const defaultCrashCycles = 10

// crashCycles returns how many kills each run makes.
func crashCycles(t *testing.T) int {
	t.Helper()
	v := os.Getenv("FERRY_CRASH_CYCLES")
	if v == "" {
		return defaultCrashCycles
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		t.Fatalf("FERRY_CRASH_CYCLES=%q: want a number of cycles from 1 to 10000", v)
	}
	return n
}

// crashSeed returns the seed of the kill schedule, FERRY_CRASH_SEED or
// the clock's, and logs it.
func crashSeed(t *testing.T) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if v := os.Getenv("FERRY_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("FERRY_CRASH_SEED=%q: %v", v, err)
		}
	}
	t.Logf("crash schedule seed %d (FERRY_CRASH_SEED=%d replays it)", seed, seed)
	return seed
}

// crashBucketConfig is the bucket section of every crash run: uploads
// every 20 ms, so that most kills find an upload pending or in flight, and
// compactions and snapshots every few seconds, so that the bucket's chain
// spans levels and kills land in those too.
func crashBucketConfig(bucket string) string {
	return fmt.Sprintf(`bucket:
  type: file
  path: %q
  upload-interval: 20ms
  levels:
    - {level: 1, interval: 2s}
    - {level: 2, interval: 5s}
  snapshot-interval: 4s
`, bucket)
}

// crashRun is one run of kill cycles against one database.
type crashRun struct {
	mode   string // journal mode
	cycles int
	seed   int64
	// checkpointEvery, when set, makes the writer run
	// wal_checkpoint(TRUNCATE) every that many commits and the kill land
	// just after one begins.
	checkpointEvery int
}

// TestE2ECrash runs the crash suite in every journal mode, and once more
// in WAL mode with frequent checkpoints and each kill aimed at one.
func TestE2ECrash(t *testing.T) {
	cycles := crashCycles(t)
	seed := crashSeed(t)
	for i, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			runCrashCycles(t, crashRun{mode: mode, cycles: cycles, seed: seed + int64(i)})
		})
	}
	t.Run("WALCheckpoint", func(t *testing.T) {
		runCrashCycles(t, crashRun{mode: "WAL", cycles: cycles, seed: seed + int64(len(journalModes)), checkpointEvery: 4})
	})
}

// runCrashCycles starts a mount, and in each cycle starts the writer,
// kills the mount and then the writer, restarts the mount, and checks the
// database with checkAfterCrash.
func runCrashCycles(t *testing.T, r crashRun) {
	const name = "crash.db"
	rnd := rand.New(rand.NewPCG(uint64(r.seed), 0))
	bucket := filepath.Join(t.TempDir(), "bucket")
	ledger := filepath.Join(t.TempDir(), "ledger")
	m := startMountWith(t, crashBucketConfig(bucket))
	next := int64(1)
	var inCheckpoint, inUpload int
	tmpSeen := make(map[string]bool)
	for cycle := range r.cycles {
		w := startCrashWriter(t, m.Path(name), ledger, r.mode, next, rnd.Int64(), r.checkpointEvery)
		if r.checkpointEvery > 0 {
			if err := w.waitFor("checkpoint", 30*time.Second); err != nil {
				t.Fatalf("cycle %d: %v", cycle, err)
			}
			time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(20+rnd.IntN(480)) * time.Millisecond)
		}
		if err := m.kill(); err != nil {
			t.Fatalf("cycle %d: %v\nmount output:\n%s", cycle, err, m.output)
		}
		ckpt, err := w.kill()
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		upload := uploadInFlight(t, bucket, tmpSeen)
		if ckpt {
			inCheckpoint++
		}
		if upload != "" {
			inUpload++
		}
		t.Logf("cycle %d: killed after %d acknowledged rows; in a checkpoint: %v; upload cut short: %q",
			cycle, len(readLedger(t, ledger)), ckpt, upload)

		m.restart(t)
		next = checkAfterCrash(t, m, name, ledger, bucket) + 1
	}
	t.Logf("%s: %d kills, %d during a checkpoint, %d during an upload", r.mode, r.cycles, inCheckpoint, inUpload)
}
