package fuse_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// termGuard is a write guard that, like a lease, says until when this node
// may write, so that WAL writes may bypass the store. The test moves the
// lease away and back.
type termGuard struct {
	mu       sync.Mutex
	epoch    uint64
	writable bool
}

func (g *termGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.writable {
		return 0, fmt.Errorf("%w: test lease elsewhere", ferry.ErrReadOnly)
	}
	return g.epoch, nil
}

func (g *termGuard) WriteTerm(name string) (uint64, time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.epoch, time.Now().Add(time.Minute), g.writable
}

func (g *termGuard) set(writable bool, epoch uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writable, g.epoch = writable, epoch
}

// mountLeasedWAL mounts a store whose writes are allowed by a termGuard
// holding epoch 1, and opens database name in WAL mode with a table t and a
// short busy timeout, so that a fenced write fails at once.
func mountLeasedWAL(t *testing.T, name string) (*testMount, *termGuard, *sql.DB) {
	t.Helper()
	guard := &termGuard{writable: true, epoch: 1}
	m := mount(t, t.TempDir(), func(s *ferry.Store) { s.SetWriteGuard(guard) })
	db := openDB(t, m.path(name), "wal", "normal")
	mustExec(t, db, "PRAGMA busy_timeout=20")
	mustExec(t, db, "CREATE TABLE t (v TEXT)")
	return m, guard, db
}

// TestWALBypassCapturesEveryCommit writes a WAL that bypasses the store,
// with checkpoints and WAL restarts every few commits, and checks that every
// commit became exactly one change set and that the log replays to the
// database byte for byte.
func TestWALBypassCapturesEveryCommit(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	db := openDB(t, m.path("bypass.db"), "wal", "normal")
	mustExec(t, db, "PRAGMA wal_autocheckpoint=3")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	if !m.store.DB("bypass.db").WALBypassed() {
		t.Fatal("the WAL of a writable database is not served by passthrough")
	}
	start := mustPos(t, m, "bypass.db").TXID
	const commits = 600
	for i := range commits {
		if i%3 == 2 {
			mustExec(t, db, "UPDATE t SET v = ? WHERE id = ?", strings.Repeat("u", i%700), i/2)
		} else {
			mustExec(t, db, "INSERT INTO t (v) VALUES (?)", strings.Repeat("x", i%900))
		}
		if i%97 == 0 {
			mustExec(t, db, "PRAGMA wal_checkpoint(TRUNCATE)")
		}
	}
	if got := mustPos(t, m, "bypass.db").TXID - start; got != commits {
		t.Fatalf("%d commits made %d change sets", commits, got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if m.store.DB("bypass.db").WALBypassed() {
		t.Fatal("WAL still followed after its last handle closed")
	}
	checkReplay(t, m, "bypass.db")
}

// TestWALBypassFence moves the lease away from a node whose application
// keeps a WAL-mode connection open: once the term ends, the store fences
// the connection's writes, which fail without changing anything, and a new
// lease lifts the fence.
func TestWALBypassFence(t *testing.T) {
	m, guard, db := mountLeasedWAL(t, "fence.db")
	mustExec(t, db, "INSERT INTO t VALUES ('before')")
	fdb := m.store.DB("fence.db")
	if !fdb.WALBypassed() {
		t.Fatal("the WAL of a writable database is not served by passthrough")
	}

	guard.set(false, 1)
	waitFor(t, "the fence", fdb.WALFenced)
	before := mustPos(t, m, "fence.db")
	_, err := db.Exec("INSERT INTO t VALUES ('during')")
	if err == nil {
		t.Fatal("write through a fenced WAL succeeded")
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the database is locked", err)
	}
	if got := mustPos(t, m, "fence.db"); got != before {
		t.Fatalf("position moved from %s to %s", before, got)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read while fenced: n=%d err=%v", n, err)
	}

	// The same epoch again is not a new lease: the fence stays.
	guard.set(true, 1)
	time.Sleep(50 * time.Millisecond)
	if !fdb.WALFenced() {
		t.Fatal("fence lifted without a new lease")
	}
	guard.set(true, 2)
	waitFor(t, "the fence to lift", func() bool { return !fdb.WALFenced() })
	mustExec(t, db, "INSERT INTO t VALUES ('after')")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, m, "fence.db")
}

// TestFenceWritersWaitsForTransaction fences as a departing lease holder
// does: it waits for a transaction in progress, then keeps writers out.
func TestFenceWritersWaitsForTransaction(t *testing.T) {
	m, _, db := mountLeasedWAL(t, "drain.db")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES ('in flight')"); err != nil {
		t.Fatal(err)
	}
	if !m.store.DB("drain.db").WALBypassed() {
		tx.Rollback()
		t.Fatal("the WAL of a writable database is not served by passthrough")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.store.FenceWriters(ctx, "drain.db"); err == nil {
		tx.Rollback()
		t.Fatal("fence taken while a transaction was open")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := m.store.FenceWriters(context.Background(), "drain.db"); err != nil {
		t.Fatal(err)
	}
	committed := mustPos(t, m, "drain.db")
	if _, err := db.Exec("INSERT INTO t VALUES ('late')"); err == nil {
		t.Fatal("write after the fence succeeded")
	}
	if got := mustPos(t, m, "drain.db"); got != committed {
		t.Fatalf("position moved from %s to %s", committed, got)
	}
	var v string
	if err := db.QueryRow("SELECT v FROM t").Scan(&v); err != nil || v != "in flight" {
		t.Fatalf("committed row: %q, %v", v, err)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
