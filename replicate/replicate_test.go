package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

func newFileReplicator(t *testing.T, opts Options) (*Replicator, ferry.Layout, *FileBackend) {
	t.Helper()
	b, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: t.TempDir()}
	return New(b, layout, opts), layout, b
}

// followerAt returns a replicator for a node whose copy of database name
// is a's, recorded as applied from the bucket, the way following leaves it.
func followerAt(t *testing.T, b Backend, opts Options, a *fileApplier, name string) *Replicator {
	t.Helper()
	f := New(b, ferry.Layout{Dir: t.TempDir()}, opts)
	pos, _ := a.LocalPos(name)
	if err := f.writeBucketPos(name, pos); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestUploadAndRestore(t *testing.T) {
	ctx := context.Background()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "tenants/a.db")
	for i := 0; i < 20; i++ {
		d.insert(10, 100)
	}
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Transactions != 21 || st.Puts != 2 {
		t.Fatalf("21 transactions in one batch should cost 2 PUTs (head and L0), got %+v", st)
	}
	if pos, ok := r.BucketPos(d.name); !ok || pos != d.pos {
		t.Fatalf("BucketPos = %v, %v; want %v", pos, ok, d.pos)
	}
	b, err := os.ReadFile(layout.BucketPosPath(d.name))
	if err != nil || strings.TrimSpace(string(b)) != d.pos.String() {
		t.Fatalf("bucket-pos file = %q, %v; want %s", b, err, d.pos)
	}

	out := layout.DBPath(d.name) // where the mount asks for it
	pos, err := r.Restore(ctx, d.name, out)
	if err != nil {
		t.Fatal(err)
	}
	if pos != d.pos {
		t.Fatalf("restored pos %v, want %v", pos, d.pos)
	}
	mustEqualFile(t, out, d.prev)
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Fatalf("restore left %d entries beside the database in the tree", len(ents))
	}
	if b, err := os.ReadFile(layout.BucketPosPath(d.name)); err != nil || strings.TrimSpace(string(b)) != d.pos.String() {
		t.Fatalf("bucket-pos after restore = %q, %v", b, err)
	}

	// Later transactions go into a second L0 file.
	d.exec("UPDATE t SET v = 'x' WHERE id % 3 = 0")
	d.exec("DELETE FROM t WHERE id % 2 = 0")
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if pos, err = r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v", pos, err)
	}
	mustEqualFile(t, out, d.prev)
}

func TestRestoreErrors(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newFileReplicator(t, testOptions())
	out := filepath.Join(t.TempDir(), "x.db")
	if _, err := r.Restore(ctx, "missing.db", out); !errors.Is(err, ferry.ErrDatabaseNotFound) {
		t.Fatalf("missing database: %v", err)
	}
	if _, err := r.Restore(ctx, "../escape.db", out); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := r.bucket.RestoreTo(ctx, "a.db", out, RestoreOptions{TXID: 3, Timestamp: time.Now()}); err == nil {
		t.Fatal("TXID and timestamp together accepted")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed restores left a file: %v", err)
	}
	// An invalid name reported as committed is dropped, not retried forever.
	r.Committed("a/../b", ferry.Pos{})
	if err := r.Sync(ctx, "a/../b"); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("sync of an invalid name: %v", err)
	}
	if st := r.Stats(); len(st.Databases) != 0 {
		t.Fatalf("invalid name tracked: %+v", st.Databases)
	}
}

func TestCorruptObjectNamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }},
		{"empty", func(b []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r, layout, b := newFileReplicator(t, testOptions())
			d := newTestDB(t, layout, "c.db")
			d.insert(50, 200)
			if err := r.Sync(ctx, d.name); err != nil {
				t.Fatal(err)
			}
			d.insert(5, 200)
			if err := r.Sync(ctx, d.name); err != nil {
				t.Fatal(err)
			}
			key := r.bucket.keys.ltx(d.name, 0, 3, 3)
			p, err := b.path(key)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.damage(data), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.db")
			_, err = r.Restore(ctx, d.name, out)
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Fatalf("restore of a damaged object: %v; want an error naming %s", err, key)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("a partial database is visible after a failed restore")
			}
		})
	}
}

func TestRestoreToTXIDAndTimestamp(t *testing.T) {
	ctx := context.Background()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "h.db")
	for i := 0; i < 6; i++ {
		d.insert(5, 100)
		if err := r.Sync(ctx, d.name); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	pos, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: 4})
	if err != nil || pos.TXID != 4 {
		t.Fatalf("restore to TXID 4: %v %v", pos, err)
	}
	mustEqualFile(t, out, d.history[4])

	ts := d.times[5].Add(time.Millisecond)
	pos, err = r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{Timestamp: ts})
	if err != nil || pos.TXID != 5 {
		t.Fatalf("restore to %v: %v %v", ts, pos, err)
	}
	mustEqualFile(t, out, d.history[5])

	if _, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: 99}); err == nil {
		t.Fatal("restore to a TXID past the end succeeded")
	}
}

func TestCompactionSnapshotRetention(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions()
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}, {Level: 2, Interval: time.Minute}}
	opts.SnapshotInterval = 5 * time.Minute
	opts.SnapshotRetention = 10 * time.Minute
	r, layout, backend := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "k.db")

	step := func(n int) {
		for i := 0; i < n; i++ {
			d.insert(3, 300)
			r.Committed(d.name, d.pos)
			r.tick(ctx)
			clock.Add(4 * time.Second)
		}
	}
	step(40) // 160 s: L1 and L2 compactions, no snapshot yet
	db := r.get(d.name)
	if len(db.files.levels[1]) == 0 || len(db.files.levels[2]) == 0 {
		t.Fatalf("no compaction: %d L1, %d L2 files", len(db.files.levels[1]), len(db.files.levels[2]))
	}
	for _, fi := range db.files.levels[0] {
		if fi.MaxTXID <= levelMax(db.files, 1) {
			t.Fatalf("L0 file %s kept after compaction into L1", fi.Key)
		}
	}
	behind := newFileApplier(t)
	behind.seed(t, d, 5)
	step(150) // 10 min more: snapshots and their retention
	if n := len(db.files.levels[SnapshotLevel]); n == 0 || n > 3 {
		t.Fatalf("%d snapshots after 13 minutes with a 5-minute interval and 10-minute retention", n)
	}
	snaps := db.files.levels[SnapshotLevel]
	oldest := snaps[0].MaxTXID
	for l := 0; l < SnapshotLevel; l++ {
		for _, fi := range db.files.levels[l] {
			if fi.MaxTXID <= oldest {
				t.Fatalf("%s kept although older than the oldest snapshot %d", fi.Key, oldest)
			}
		}
	}
	// The bucket's listing matches the in-memory view.
	listed, err := r.bucket.list(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	for l := range listed.levels {
		if len(listed.levels[l]) != len(db.files.levels[l]) {
			t.Fatalf("level %d: bucket has %d files, replicator thinks %d", l, len(listed.levels[l]), len(db.files.levels[l]))
		}
	}

	out := filepath.Join(t.TempDir(), "out.db")
	if err := r.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	pos, err := r.Restore(ctx, d.name, out)
	if err != nil || pos != d.pos {
		t.Fatalf("restore after compaction: %v %v (want %v)", pos, err, d.pos)
	}
	mustEqualFile(t, out, d.prev)

	// A node left at TXID 5, whose history the bucket has since dropped
	// behind snapshots, catches up from a snapshot.
	if pos, err := followerAt(t, backend, opts, behind, d.name).CatchUp(ctx, d.name, behind); err != nil || pos != d.pos {
		t.Fatalf("catch up from behind the oldest snapshot: %v %v; want %v", pos, err, d.pos)
	}
	mustEqualFile(t, behind.path(d.name), d.prev)

	// Restore to the newest snapshot's TXID.
	snapTX := snaps[len(snaps)-1].MaxTXID
	if _, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: snapTX}); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, out, d.history[snapTX])
}

func TestCatchUp(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions()
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
	opts.SnapshotInterval = -1
	r, layout, backend := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "cu/x.db")
	for i := 0; i < 12; i++ {
		d.insert(4, 200)
		r.Committed(d.name, d.pos)
		r.tick(ctx)
		clock.Add(3 * time.Second)
	}
	// From scratch.
	a := newFileApplier(t)
	pos, err := r.CatchUp(ctx, d.name, a)
	if err != nil || pos != d.pos {
		t.Fatalf("catch up from nothing: %v %v, want %v", pos, err, d.pos)
	}
	mustEqualFile(t, a.path(d.name), d.prev)

	// From a point inside a compacted file (L0 below it is gone), on a
	// follower that recorded the position when it applied it from the
	// bucket.
	for _, from := range []ltx.TXID{2, 5, 9} {
		a := newFileApplier(t)
		a.seed(t, d, from)
		f := followerAt(t, backend, opts, a, d.name)
		pos, err := f.CatchUp(ctx, d.name, a)
		if err != nil || pos != d.pos {
			t.Fatalf("catch up from %d: %v %v, want %v", from, pos, err, d.pos)
		}
		mustEqualFile(t, a.path(d.name), d.prev)
		if got := f.readBucketPos(d.name); got != d.pos {
			t.Fatalf("catch up from %d recorded bucket position %v, want %v", from, got, d.pos)
		}
	}
	// Without that record nothing in the bucket proves the copy at TXID 5
	// is on its history: it could hold commits never uploaded.
	unproven := newFileApplier(t)
	unproven.seed(t, d, 5)
	f := New(backend, ferry.Layout{Dir: t.TempDir()}, opts)
	if _, err := f.CatchUp(ctx, d.name, unproven); !errors.Is(err, ErrConflict) {
		t.Fatalf("catch up of an unproven copy inside a compacted file: %v; want ErrConflict", err)
	}

	// Already current: nothing to do.
	if pos, err := r.CatchUp(ctx, d.name, a); err != nil || pos != d.pos {
		t.Fatalf("catch up when current: %v %v", pos, err)
	}
	// The form the lease managers call.
	b := newFileApplier(t)
	b.seed(t, d, 3)
	if err := followerAt(t, backend, opts, b, d.name).CatchUpFunc(b)(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, b.path(d.name), d.prev)

	// A local history that forked from the bucket's is refused.
	c := newFileApplier(t)
	c.seed(t, d, 3)
	c.pos[d.name] = ferry.Pos{TXID: 3, PostApplyChecksum: c.pos[d.name].PostApplyChecksum ^ 1}
	if _, err := r.CatchUp(ctx, d.name, c); err == nil {
		t.Fatalf("catch up of a forked database: %v", err)
	}
}

func TestStaleWriterRejected(t *testing.T) {
	ctx := context.Background()
	b, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	testStaleWriter(t, ctx, b)
}

// testStaleWriter: node A writes under epoch 1, node B takes the lease
// (epoch 2), catches up and writes on; A's later upload must be refused
// and change nothing.
func testStaleWriter(t *testing.T, ctx context.Context, b Backend) {
	guardA, guardB := &epochGuard{epoch: 1}, &epochGuard{epoch: 2}
	layoutA, layoutB := ferry.Layout{Dir: t.TempDir()}, ferry.Layout{Dir: t.TempDir()}
	optsA, optsB := testOptions(), testOptions()
	optsA.Guard, optsB.Guard = guardA, guardB
	optsA.Node, optsB.Node = "a", "b"
	ra, rb := New(b, layoutA, optsA), New(b, layoutB, optsB)

	da := newTestDB(t, layoutA, "s.db")
	for i := 0; i < 5; i++ {
		da.insert(3, 100)
	}
	if err := ra.Sync(ctx, "s.db"); err != nil {
		t.Fatal(err)
	}

	// B restores and writes on.
	file := filepath.Join(t.TempDir(), "b.db")
	pos, err := rb.Restore(ctx, "s.db", file)
	if err != nil {
		t.Fatal(err)
	}
	db := continueTestDB(t, layoutB, "s.db", file, pos)
	db.insert(7, 100)
	db.insert(7, 100)
	if err := rb.Sync(ctx, "s.db"); err != nil {
		t.Fatal(err)
	}

	// A, unaware, commits and uploads.
	da.insert(9, 100)
	err = ra.Sync(ctx, "s.db")
	if !errors.Is(err, ferry.ErrStaleEpoch) {
		t.Fatalf("stale writer's upload: %v; want ErrStaleEpoch", err)
	}
	if st := ra.Stats(); st.Rejections != 1 || st.LastError == "" {
		t.Fatalf("stale rejection not reported: %+v", st)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	got, err := rb.Restore(ctx, "s.db", out)
	if err != nil || got != db.pos {
		t.Fatalf("restore after the stale upload: %v %v; want B's %v", got, err, db.pos)
	}
	mustEqualFile(t, out, db.prev)
}

func TestDivergedLocalHistoryRefused(t *testing.T) {
	ctx := context.Background()
	b, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	// Two nodes, same epoch (a static setup misconfigured with two
	// primaries): the second one's history forks at TXID 1.
	la, lb := ferry.Layout{Dir: t.TempDir()}, ferry.Layout{Dir: t.TempDir()}
	ra, rb := New(b, la, testOptions()), New(b, lb, testOptions())
	da, db := newTestDB(t, la, "f.db"), newTestDB(t, lb, "f.db")
	da.insert(1, 10)
	db.insert(2, 10)
	db.insert(2, 10)
	if err := ra.Sync(ctx, "f.db"); err != nil {
		t.Fatal(err)
	}
	if err := rb.Sync(ctx, "f.db"); !errors.Is(err, ErrConflict) {
		t.Fatalf("forked upload: %v; want ErrConflict", err)
	}
}

func TestBacklogWhileBucketFails(t *testing.T) {
	ctx := context.Background()
	fb, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	fail := &failingBackend{Backend: fb}
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(fail, layout, testOptions())
	d := newTestDB(t, layout, "down.db")
	d.insert(3, 10)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	fail.down.Store(true)
	for i := 0; i < 4; i++ {
		d.insert(3, 10)
	}
	if err := r.Sync(ctx, d.name); err == nil {
		t.Fatal("upload to a failing bucket succeeded")
	}
	st := r.Stats()
	if len(st.Databases) != 1 || st.Databases[0].Backlog != 4 || st.Databases[0].BacklogBytes == 0 || st.LastError == "" {
		t.Fatalf("backlog not visible: %+v", st)
	}
	fail.down.Store(false)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Databases[0].Backlog != 0 {
		t.Fatalf("backlog after recovery: %+v", st)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v", pos, err)
	}
	mustEqualFile(t, out, d.prev)
}

func TestHeadWrittenButObjectLost(t *testing.T) {
	ctx := context.Background()
	fb, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	fail := &failingBackend{Backend: fb}
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(fail, layout, testOptions())
	d := newTestDB(t, layout, "lost.db")
	d.insert(3, 10)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(3, 10)
	fail.failLTXPuts.Store(true) // the head goes through, the L0 object does not
	if err := r.Sync(ctx, d.name); err == nil {
		t.Fatal("want an error")
	}
	fail.failLTXPuts.Store(false)
	// A fresh replicator (a restart) finds the head ahead of the objects
	// and uploads the announced file from the local log.
	r2 := New(fb, layout, testOptions())
	if err := r2.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r2.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v", pos, err)
	}
}

func TestStartFindsBacklogAndCloseFlushes(t *testing.T) {
	ctx := context.Background()
	opts := testOptions()
	opts.UploadInterval = time.Hour // only Close will upload
	r, layout, _ := newFileReplicator(t, opts)
	names := []string{"a.db", "dir/b.db", "dir/sub/c.db"}
	var dbs []*testDB
	for _, n := range names {
		d := newTestDB(t, layout, n)
		d.insert(2, 10)
		dbs = append(dbs, d)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.bucket.Databases(ctx)
	if err != nil || strings.Join(got, ",") != "a.db,dir/b.db,dir/sub/c.db" {
		t.Fatalf("Databases = %v, %v", got, err)
	}
	for _, d := range dbs {
		if p, ok := r.BucketPos(d.name); !ok || p != d.pos {
			t.Fatalf("%s: bucket at %v, want %v", d.name, p, d.pos)
		}
	}
}

func TestBackgroundUploadBatches(t *testing.T) {
	ctx := context.Background()
	opts := testOptions()
	opts.UploadInterval = 20 * time.Millisecond
	r, layout, _ := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "busy.db")
	for i := 0; i < 100; i++ {
		d.insert(1, 50)
	}
	waitFor := func(want ferry.Pos) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if p, _ := r.BucketPos(d.name); p == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("background upload did not reach %v", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The backlog found at start-up goes up as one batch: an L0 object
	// and the head.
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(d.pos)
	if st := r.Stats(); st.Puts != 2 || st.Transactions != 101 {
		t.Fatalf("start-up backlog of 101 transactions: %d PUTs, %d transactions; want 2 and 101", st.Puts, st.Transactions)
	}
	// Commits reported while running are uploaded on the next interval.
	for i := 0; i < 50; i++ {
		r.Committed(d.name, d.insert(1, 50))
	}
	waitFor(d.pos)
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Transactions != 151 {
		t.Fatalf("uploaded %d transactions, want 151", st.Transactions)
	}
}

// TestTakeoverAfterLostUpload: writer A announces a batch in the head but
// dies before storing it. B, with a newer lease, waits PendingGrace, rolls
// the head back to what the bucket holds and carries on; A, back later,
// is refused.
func TestTakeoverAfterLostUpload(t *testing.T) {
	ctx := context.Background()
	fb, err := NewFileBackend(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	fail := &failingBackend{Backend: fb}
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	la, lb := ferry.Layout{Dir: t.TempDir()}, ferry.Layout{Dir: t.TempDir()}
	optsA, optsB := testOptions(), testOptions()
	optsA.Guard, optsB.Guard = &epochGuard{epoch: 1}, &epochGuard{epoch: 2}
	optsB.Now, optsB.PendingGrace = clock.Now, 10*time.Second
	ra, rb := New(fail, la, optsA), New(fb, lb, optsB)

	da := newTestDB(t, la, "t.db")
	da.insert(3, 10)
	if err := ra.Sync(ctx, "t.db"); err != nil {
		t.Fatal(err)
	}
	kept := da.pos
	da.insert(3, 10)
	fail.failLTXPuts.Store(true)
	if err := ra.Sync(ctx, "t.db"); err == nil {
		t.Fatal("want the L0 upload to fail")
	}

	file := filepath.Join(t.TempDir(), "b.db")
	pos, err := rb.Restore(ctx, "t.db", file)
	if err != nil || pos != kept {
		t.Fatalf("restore with an announced file missing: %v %v; want %v", pos, err, kept)
	}
	db := continueTestDB(t, lb, "t.db", file, pos)
	db.insert(4, 10)
	if err := rb.Sync(ctx, "t.db"); err == nil || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("first upload under the new lease: %v; want to wait for the announced file", err)
	}
	clock.Add(11 * time.Second)
	if err := rb.Sync(ctx, "t.db"); !errors.Is(err, ErrBehind) {
		t.Fatalf("after the grace period: %v; want the head rolled back (ErrBehind)", err)
	}
	if err := rb.Sync(ctx, "t.db"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if got, err := rb.Restore(ctx, "t.db", out); err != nil || got != db.pos {
		t.Fatalf("restore after takeover: %v %v; want %v", got, err, db.pos)
	}
	mustEqualFile(t, out, db.prev)

	// A comes back: its announced file must not be written now.
	fail.failLTXPuts.Store(false)
	da.insert(1, 10)
	da.insert(1, 10)
	ra2 := New(fb, la, optsA)
	if err := ra2.Sync(ctx, "t.db"); !errors.Is(err, ferry.ErrStaleEpoch) {
		t.Fatalf("old writer after takeover: %v; want ErrStaleEpoch", err)
	}
	if got, err := rb.Restore(ctx, "t.db", out); err != nil || got != db.pos {
		t.Fatalf("restore after the old writer returned: %v %v", got, err)
	}
}

func TestBadBucketContent(t *testing.T) {
	ctx := context.Background()
	r, layout, fb := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "g.db")
	d.insert(3, 10)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	// Stray objects in and around the level directories are ignored.
	for _, k := range []string{"g.db/0000/notes.txt", "g.db/0000/zz-zz.ltx", "g.db/000a/0000000000000001-0000000000000001.ltx", "g.db/README"} {
		if _, err := fb.Put(ctx, k, strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore with stray objects: %v %v", pos, err)
	}
	// A damaged head is an error, not a guess.
	for _, body := range []string{"{not json", `{"txid":5,"checksum":0,"lastMin":9}`, strings.Repeat(" ", maxHeadSize+1)} {
		if _, err := fb.Put(ctx, "g.db/"+headName, strings.NewReader(body), int64(len(body)), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Restore(ctx, d.name, out); err == nil || !strings.Contains(err.Error(), "head") {
			t.Fatalf("restore with head %.20q: %v", body, err)
		}
		r2 := New(fb, layout, testOptions())
		d.insert(1, 10)
		if err := r2.Sync(ctx, d.name); err == nil {
			t.Fatalf("upload with head %.20q succeeded", body)
		}
	}
}

// readOnlyGuard refuses every write, as on a node that does not hold the
// lease.
type readOnlyGuard struct{ calls atomic.Int64 }

func (g *readOnlyGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	g.calls.Add(1)
	return 0, fmt.Errorf("%w: held by another node", ferry.ErrReadOnly)
}

func TestReadOnlyNodeDoesNotUpload(t *testing.T) {
	ctx := context.Background()
	g := &readOnlyGuard{}
	opts := testOptions()
	opts.Guard = g
	r, layout, _ := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "ro.db")
	d.insert(1, 10)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatalf("sync on a read-only node: %v", err)
	}
	st := r.Stats()
	if st.Puts != 0 || st.LastError != "" || st.Databases[0].Backlog != 2 {
		t.Fatalf("read-only node: %+v", st)
	}
	// The background loop does not keep asking while nothing is committed.
	calls := g.calls.Load()
	for i := 0; i < 5; i++ {
		r.tick(ctx)
	}
	if g.calls.Load() != calls {
		t.Fatalf("guard asked %d more times with no new commits", g.calls.Load()-calls)
	}
}

// TestRestartAfterCompaction: the head's L0 file compacted away must not
// be taken for a lost upload after a restart.
func TestRestartAfterCompaction(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions()
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
	r, layout, _ := newFileReplicator(t, opts)
	d := newTestDB(t, layout, "rc.db")
	for i := 0; i < 5; i++ {
		d.insert(2, 10)
		r.Committed(d.name, d.pos)
		r.tick(ctx)
		clock.Add(4 * time.Second)
	}
	r.tick(ctx)
	if n := len(r.get(d.name).files.levels[0]); n != 0 {
		t.Fatalf("%d L0 files left after compaction", n)
	}
	puts := r.Stats().Puts
	r2 := New(r.bucket.backend.(countingBackend).Backend, layout, opts)
	if err := r2.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if st := r2.Stats(); st.Puts != 0 {
		t.Fatalf("restart re-uploaded %d objects (first run made %d)", st.Puts, puts)
	}
}

// TestRestoreShrinkAndGrow restores across a VACUUM that shrinks the file
// and later growth, checking the rolling checksum at every step.
func TestRestoreShrinkAndGrow(t *testing.T) {
	ctx := context.Background()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "v.db")
	d.insert(400, 500)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.exec("DELETE FROM t WHERE id > 20")
	vac := d.execRaw("VACUUM")
	if len(d.history[vac.TXID]) >= len(d.history[vac.TXID-1]) {
		t.Fatalf("VACUUM did not shrink the file: %d -> %d bytes", len(d.history[vac.TXID-1]), len(d.history[vac.TXID]))
	}
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(300, 700)
	d.exec("UPDATE t SET v = 'short' WHERE id % 2 = 0")
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	for txid := ltx.TXID(1); txid <= d.pos.TXID; txid++ {
		pos, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: txid})
		if txid%2 == 1 { // uploads were 1-2, 3-4 and 5-6
			// Inside an upload batch: not a restorable point.
			if err == nil {
				t.Fatalf("TXID %d restored although inside a batch", txid)
			}
			continue
		}
		if err != nil {
			t.Fatalf("restore to %d: %v", txid, err)
		}
		want, _ := ltx.ChecksumDatabase(bytes.NewReader(d.history[txid]), testPageSize, uint32(len(d.history[txid])/testPageSize))
		if pos.TXID != txid || pos.PostApplyChecksum != want {
			t.Fatalf("restore to %d: %v; want checksum %s", txid, pos, want)
		}
		mustEqualFile(t, out, d.history[txid])
	}
}

// A local copy whose last commit differs from the bucket's at the same
// TXID must not be caught up with a bucket object that starts at or before
// that TXID: the object holds no checksum for it, and the pages it brings
// can cover the difference, hiding a forked history in the local log.
func TestCatchUpRefusesForkUnderStraddlingObject(t *testing.T) {
	ctx := context.Background()
	r, layout, _ := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "fork.db")
	d.insert(2, 100)
	d.insert(2, 100)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	base := d.pos.TXID

	// Another node, at the same point, commits one transaction of its own
	// and is never heard of again.
	other := continueTestDB(t, ferry.Layout{Dir: t.TempDir()}, d.name, d.path, d.pos)
	other.insert(1, 100)

	// The bucket's writer commits twice and uploads both as one object
	// that starts right where the forks part.
	d.insert(1, 100)
	d.insert(1, 100)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	files, err := r.bucket.list(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	if !files.holds(base+2) || files.holds(base+1) {
		t.Fatalf("want one object for TXIDs %s-%s, bucket holds %+v", base+1, base+2, files.levels[0])
	}

	forked := newFileApplier(t)
	forked.seed(t, other, base+1)
	if _, err := r.CatchUp(ctx, d.name, forked); !errors.Is(err, ErrConflict) {
		t.Fatalf("catch up of a copy forked at TXID %s: %v; want ErrConflict", base+1, err)
	}

	// A copy on the bucket's history at the same TXID catches up.
	same := newFileApplier(t)
	same.seed(t, d, base)
	if pos, err := r.CatchUp(ctx, d.name, same); err != nil || pos != d.pos {
		t.Fatalf("catch up from TXID %s: %v %v; want %v", base, pos, err, d.pos)
	}
}
