package replicate

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// logBuffer collects log lines so tests can count them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many lines contain every one of parts.
func (b *logBuffer) count(parts ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, line := range strings.Split(b.buf.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// damageObject replaces the object under key with a copy whose middle
// byte is flipped, through the backend, as bit rot or a bad copy would.
func damageObject(t *testing.T, b Backend, key string) {
	t.Helper()
	ctx := context.Background()
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// healSetup writes three uploads of a database through a replicator on b,
// driven by a fake clock, and damages the middle L0 object.
func healSetup(t *testing.T, b Backend, opts Options) (*Replicator, *testDB, *fakeClock, string) {
	t.Helper()
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}
	opts.Now = clock.Now
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, opts)
	d := newTestDB(t, layout, "heal.db")
	for i := 0; i < 3; i++ {
		d.insert(20, 200)
		if err := r.Sync(ctx, d.name); err != nil {
			t.Fatal(err)
		}
	}
	// TXID 1 created the table, then one upload per insert: 1-2, 3, 4.
	key := r.bucket.keys.ltx(d.name, 0, 3, 3)
	damageObject(t, b, key)
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := r.Restore(ctx, d.name, out); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("restore through the damaged object: %v; want an error naming %s", err, key)
	}
	return r, d, clock, key
}

// testCorruptObjectHealed checks that compaction, and a snapshot, rebuild
// a damaged L0 object from the local log, after which restores and
// compactions succeed.
func testCorruptObjectHealed(t *testing.T, newBackend func(t *testing.T) Backend) {
	ctx := context.Background()
	t.Run("compaction", func(t *testing.T) {
		opts := testOptions()
		opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
		opts.SnapshotInterval = -1
		r, d, clock, key := healSetup(t, newBackend(t), opts)
		db := r.get(d.name)
		clock.Add(10 * time.Second)
		r.tick(ctx) // finds the damage and rebuilds the object
		out := filepath.Join(t.TempDir(), "out.db")
		if pos, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: 3}); err != nil || pos.TXID != 3 {
			t.Fatalf("restore to TXID 3 through the rebuilt object: %v %v", pos, err)
		}
		mustEqualFile(t, out, d.history[3])
		clock.Add(10 * time.Second)
		r.tick(ctx) // compacts
		if st := r.Stats(); st.LastError != "" {
			t.Fatalf("replication error after healing: %s", st.LastError)
		}
		if got := levelMax(db.files, 1); got != d.pos.TXID {
			t.Fatalf("L1 reaches TXID %s after healing %s; want %s", got, key, d.pos.TXID)
		}
		if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
			t.Fatalf("restore: %v %v; want %v", pos, err, d.pos)
		}
		mustEqualFile(t, out, d.prev)
	})
	t.Run("snapshot", func(t *testing.T) {
		opts := testOptions()
		opts.Levels = []Level{}
		opts.SnapshotInterval = time.Minute
		r, d, clock, _ := healSetup(t, newBackend(t), opts)
		db := r.get(d.name)
		clock.Add(time.Minute)
		r.tick(ctx)
		if st := r.Stats(); st.LastError != "" {
			t.Fatalf("replication error after healing: %s", st.LastError)
		}
		if got := levelMax(db.files, SnapshotLevel); got != d.pos.TXID {
			t.Fatalf("snapshot at TXID %s; want %s", got, d.pos.TXID)
		}
		out := filepath.Join(t.TempDir(), "out.db")
		if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
			t.Fatalf("restore: %v %v; want %v", pos, err, d.pos)
		}
		mustEqualFile(t, out, d.prev)
	})
}

func TestCorruptObjectHealed(t *testing.T) {
	testCorruptObjectHealed(t, func(t *testing.T) Backend {
		b, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestS3CorruptObjectHealed(t *testing.T) {
	testCorruptObjectHealed(t, func(t *testing.T) Backend {
		b, _ := newS3Backend(t)
		return b
	})
}

// TestCorruptObjectBeyondRepair: when the local log no longer holds the
// change sets of a damaged object, the damage is reported once, not on
// every interval, and compaction goes on up to it.
func TestCorruptObjectBeyondRepair(t *testing.T) {
	ctx := context.Background()
	logs := &logBuffer{}
	b, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
	opts.SnapshotInterval = 5 * time.Minute
	r, d, clock, key := healSetup(t, b, opts)
	// The local log's retention removed the damaged object's change set.
	if err := os.Remove(r.layout.LTXPath(d.name, 3, 3)); err != nil {
		t.Fatal(err)
	}
	counter := &countingGets{Backend: b, key: key}
	r.bucket.backend = countingBackend{Backend: counter, c: &r.counters}

	db := r.get(d.name)
	for i := 0; i < 120; i++ { // 10 minutes, a commit every 5 seconds
		d.insert(1, 10)
		r.Committed(d.name, d.pos)
		r.tick(ctx)
		clock.Add(5 * time.Second)
	}
	t.Logf("damaged object read %d times, %d failures logged", counter.n(), logs.count("replication failed"))
	if n := logs.count("level=ERROR", key); n != 1 {
		t.Fatalf("the damaged object was reported %d times; want once\n%s", n, logs.buf.String())
	}
	if n := logs.count("replication failed"); n > 2 {
		t.Fatalf("%d replication failures logged in 10 minutes; want the damage to be retried rarely\n%s", n, logs.buf.String())
	}
	if n := counter.n(); n > 10 {
		t.Fatalf("the damaged object was read %d times in 10 minutes", n)
	}
	if got := levelMax(db.files, 1); got != 2 {
		t.Fatalf("L1 reaches TXID %s; want the compaction to go up to the damaged object (TXID 2)", got)
	}
}

// countingGets counts the reads of one key.
type countingGets struct {
	Backend
	key  string
	mu   sync.Mutex
	gets int
}

func (c *countingGets) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	if key == c.key {
		c.mu.Lock()
		c.gets++
		c.mu.Unlock()
	}
	return c.Backend.Get(ctx, key)
}

func (c *countingGets) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets
}
