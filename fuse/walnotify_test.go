package fuse_test

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// captureLog is a CaptureListener that records when each transaction was
// captured, and wakes whoever waits for one.
type captureLog struct {
	mu    sync.Mutex
	at    map[string]map[ltx.TXID]time.Time
	wake  chan struct{}
	clock func() time.Time
}

func newCaptureLog() *captureLog {
	return &captureLog{at: make(map[string]map[ltx.TXID]time.Time), wake: make(chan struct{}, 1), clock: time.Now}
}

func (c *captureLog) Captured(name string, pos ferry.Pos) {
	now := c.clock()
	c.mu.Lock()
	if c.at[name] == nil {
		c.at[name] = make(map[ltx.TXID]time.Time)
	}
	c.at[name][pos.TXID] = now
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// wait returns when transaction txid of name was captured, or false when
// it was not within timeout.
func (c *captureLog) wait(name string, txid ltx.TXID, timeout time.Duration) (time.Time, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		at, ok := c.at[name][txid]
		c.mu.Unlock()
		if ok {
			return at, true
		}
		select {
		case <-c.wake:
		case <-deadline.C:
			return time.Time{}, false
		}
	}
}

// captureWait bounds how long a test waits for a commit to be captured. It
// is generous, so that a slow machine does not fail the test, and far below
// the hour-long poll the tests set, so that only being told of the write
// can pass it.
const captureWait = 2 * time.Second

// TestWALWatchCapturesCommits checks that each commit to a WAL that
// bypasses the store is captured without waiting for the poll, which the
// test sets to an hour. Nothing else in the test makes the store look at
// the WAL: no position is read while it waits, the WAL is not synced
// (synchronous=NORMAL) and it is not checkpointed.
func TestWALWatchCapturesCommits(t *testing.T) {
	captured := newCaptureLog()
	m := mountOpts(t, t.TempDir(), ferry.StoreOptions{WALPollInterval: time.Hour}, func(s *ferry.Store) {
		s.AddCaptureListener(captured)
	})
	db := openDB(t, m.path("watch.db"), "wal", "normal")
	mustExec(t, db, "CREATE TABLE t (v TEXT)")
	fdb := m.store.DB("watch.db")
	if !fdb.WALBypassed() {
		t.Fatal("the WAL of a writable database is not served by passthrough")
	}
	if got := m.store.WALWatches(); got != 1 {
		t.Fatalf("%d WALs watched, want 1", got)
	}
	txid := fdb.Pos().TXID
	for i := range 5 {
		// Let the store fall quiet first: a capture wakes the group syncer,
		// which looks at the WAL again shortly after, and would capture this
		// commit for the watch.
		time.Sleep(100 * time.Millisecond)
		mustExec(t, db, "INSERT INTO t VALUES (?)", fmt.Sprint("row ", i))
		txid++
		if _, ok := captured.wait("watch.db", txid, captureWait); !ok {
			t.Fatalf("commit %d (TXID %d) not captured within %v", i, txid, captureWait)
		}
	}
	if got := fdb.Pos().TXID; got != txid {
		t.Fatalf("position is TXID %d, want %d", got, txid)
	}
}

// TestWALWatchRemoved checks that a WAL is watched only while passthrough
// handles of it are open: closing the connections of several databases
// leaves no watch behind.
func TestWALWatchRemoved(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	const dbs = 3
	var open []*sql.DB
	for i := range dbs {
		name := fmt.Sprintf("w%d.db", i)
		db := openDB(t, m.path(name), "wal", "normal")
		mustExec(t, db, "CREATE TABLE t (v TEXT)")
		if got := m.store.WALWatches(); got != i+1 {
			t.Fatalf("%d WALs watched with %d open, want %d", got, i+1, i+1)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// Opened and closed again: the watch comes and goes with the
		// handles, and does not pile up.
		waitFor(t, "the closed WAL's watch to go", func() bool { return m.store.WALWatches() == i })
		db = openDB(t, m.path(name), "wal", "normal")
		mustExec(t, db, "INSERT INTO t VALUES ('x')")
		open = append(open, db)
	}
	if got := m.store.WALWatches(); got != dbs {
		t.Fatalf("%d WALs watched with %d open", got, dbs)
	}
	for _, db := range open {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every watch to go", func() bool { return m.store.WALWatches() == 0 })
	for i := range dbs {
		if m.store.DB(fmt.Sprintf("w%d.db", i)).WALBypassed() {
			t.Fatalf("w%d.db: WAL still followed after its last handle closed", i)
		}
	}
}
