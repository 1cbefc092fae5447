package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/s3test"
)

// newS3Backend starts a versitygw and returns a backend for its bucket.
func newS3Backend(t testing.TB) (*S3Backend, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t)
	b, err := NewS3Backend(context.Background(), S3Config{
		Bucket: srv.Bucket, Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, MaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, srv
}

// testBackendContract checks the conditional-write semantics fencing
// relies on.
func testBackendContract(t *testing.T, b Backend) {
	ctx := context.Background()
	put := func(key, body string, opts PutOptions) (string, error) {
		return b.Put(ctx, key, strings.NewReader(body), int64(len(body)), opts)
	}
	etag, err := put("p/db/head", "one", PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put("p/db/head", "two", PutOptions{IfNoneMatch: true}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("If-None-Match on an existing object: %v", err)
	}
	if _, err := put("p/db/head", "two", PutOptions{IfMatch: "\"nope\""}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("If-Match with a wrong ETag: %v", err)
	}
	etag2, err := put("p/db/head", "three", PutOptions{IfMatch: etag})
	if err != nil {
		t.Fatalf("If-Match with the right ETag: %v", err)
	}
	if _, err := put("p/db/head", "four", PutOptions{IfMatch: etag}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("If-Match with a superseded ETag: %v", err)
	}
	rc, info, err := b.Get(ctx, "p/db/head")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "three" || info.ETag != etag2 {
		t.Fatalf("Get = %q etag %s; want three, %s", data, info.ETag, etag2)
	}
	if _, _, err := b.Get(ctx, "p/db/missing"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	for _, k := range []string{"p/db/0000/a", "p/db/0001/b", "p/other/x"} {
		if _, err := put(k, k, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := b.List(ctx, "p/db/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if got := strings.Join(keys, ","); got != "p/db/0000/a,p/db/0001/b,p/db/head" {
		t.Fatalf("List = %s", got)
	}
	if err := b.Delete(ctx, "p/db/0000/a", "p/db/never"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx, "p/db/0000/a"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("deleted object still readable: %v", err)
	}
}

func TestFileBackendContract(t *testing.T) {
	b, err := NewFileBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testBackendContract(t, b)
	for _, key := range []string{"../x", "/abs", "a//b", "a/./b", "", `a\b`} {
		if _, err := b.Put(context.Background(), key, strings.NewReader("x"), 1, PutOptions{}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

func TestS3BackendContract(t *testing.T) {
	b, _ := newS3Backend(t)
	testBackendContract(t, b)
}

func TestS3UploadRestoreAndLitestream(t *testing.T) {
	ctx := context.Background()
	b, srv := newS3Backend(t)
	clock := &fakeClock{now: time.Now()}
	opts := testOptions()
	opts.Prefix = "ferry"
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}, {Level: 2, Interval: time.Minute}}
	opts.SnapshotInterval = 2 * time.Minute
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, opts)
	d := newTestDB(t, layout, "apps/main.db")
	for i := 0; i < 60; i++ {
		d.insert(20, 120)
		if i%7 == 0 {
			d.exec("DELETE FROM t WHERE id % 5 = 0")
		}
		r.Committed(d.name, d.pos)
		r.tick(ctx)
		clock.Add(3 * time.Second)
	}
	// Litestream bounds timestamps by listing dates, which have one-second
	// granularity: make the newest file clearly newer than the others.
	time.Sleep(1100 * time.Millisecond)
	d.insert(1, 10)
	if err := r.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := r.bucket.list(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	if len(files.levels[1]) == 0 || len(files.levels[SnapshotLevel]) == 0 {
		t.Fatalf("expected L1 files and a snapshot: %d L1, %d snapshots", len(files.levels[1]), len(files.levels[SnapshotLevel]))
	}

	out := filepath.Join(t.TempDir(), "ferry.db")
	pos, err := r.Restore(ctx, d.name, out)
	if err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v; want %v", pos, err, d.pos)
	}
	mustEqualFile(t, out, d.prev)

	// Stock Litestream reads the same bucket.
	bin := litestreamBinary(t)
	lsOut := filepath.Join(t.TempDir(), "litestream.db")
	url := fmt.Sprintf("s3://%s/ferry/%s?endpoint=%s&region=auto&forcePathStyle=true", srv.Bucket, d.name, srv.Endpoint)
	cmd := exec.Command(bin, "restore", "-o", lsOut, url)
	cmd.Env = litestreamEnv(srv)
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, outb)
	}
	mustEqualFile(t, lsOut, d.prev)

	// And to an earlier TXID.
	lsOld := filepath.Join(t.TempDir(), "litestream-old.db")
	snapTX := files.levels[SnapshotLevel][0].MaxTXID
	cmd = exec.Command(bin, "restore", "-o", lsOld, "-txid", fmt.Sprintf("%016x", uint64(snapTX)), url)
	cmd.Env = litestreamEnv(srv)
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore -txid: %v\n%s", err, outb)
	}
	mustEqualFile(t, lsOld, d.history[snapTX])

	// To a timestamp, with Ferry and with Litestream: the newest state the
	// bucket can rebuild from before that time, which after compaction may
	// be a little older than the last transaction before it.
	k := snapTX + 5
	ts := d.times[k].Add(time.Millisecond)
	tsOut := filepath.Join(t.TempDir(), "ts.db")
	pos, err = r.bucket.RestoreTo(ctx, d.name, tsOut, RestoreOptions{Timestamp: ts})
	if err != nil || pos.TXID > k || pos.TXID < snapTX {
		t.Fatalf("restore to %v: %v %v", ts, pos, err)
	}
	mustEqualFile(t, tsOut, d.history[pos.TXID])
	lsTS := filepath.Join(t.TempDir(), "litestream-ts.db")
	cmd = exec.Command(bin, "restore", "-o", lsTS, "-timestamp", ts.UTC().Format(time.RFC3339Nano), url)
	cmd.Env = litestreamEnv(srv)
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore -timestamp: %v\n%s", err, outb)
	}
	got, err := os.ReadFile(lsTS)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for txid := snapTX; txid <= k; txid++ {
		if bytes.Equal(got, d.history[txid]) {
			found = true
		}
	}
	if !found {
		t.Fatal("litestream's restore to a timestamp matches no state at or before it")
	}
}

// litestreamBinary finds the litestream binary, failing under CI=true.
func litestreamBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("litestream"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "litestream")
	_, err := os.Stat(p)
	if err != nil {
		err = fmt.Errorf("litestream v0.5.18 not installed (scripts/setup.d/20-s3.sh): %w", err)
	}
	s3test.Require(t, err)
	return p
}

func TestS3BucketDown(t *testing.T) {
	ctx := context.Background()
	b, srv := newS3Backend(t)
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, testOptions())
	d := newTestDB(t, layout, "down.db")
	d.insert(10, 100)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 0; i < 5; i++ {
		d.insert(10, 100)
	}
	if err := r.Sync(ctx, d.name); err == nil {
		t.Fatal("upload succeeded with the server stopped")
	}
	st := r.Stats()
	if st.Databases[0].Backlog != 5 || st.LastError == "" {
		t.Fatalf("backlog not visible while the bucket is down: %+v", st.Databases)
	}
	// The local log keeps everything past the recorded bucket position.
	bp, _ := os.ReadFile(layout.BucketPosPath(d.name))
	if !strings.HasPrefix(string(bp), fmt.Sprintf("%016x/", 2)) {
		t.Fatalf("bucket-pos moved while the bucket was down: %q", bp)
	}
	// A restart while the bucket is down still shows the backlog.
	r2 := New(b, layout, testOptions())
	if err := r2.Sync(ctx, d.name); err == nil {
		t.Fatal("upload succeeded with the server stopped")
	}
	if st := r2.Stats(); st.Databases[0].Backlog != 5 {
		t.Fatalf("backlog after a restart while the bucket is down: %+v", st.Databases)
	}
	srv.Restart()
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Databases[0].Backlog != 0 {
		t.Fatalf("backlog after recovery: %+v", st.Databases)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore: %v %v", pos, err)
	}
	mustEqualFile(t, out, d.prev)
}

func TestS3CorruptObject(t *testing.T) {
	ctx := context.Background()
	b, srv := newS3Backend(t)
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, testOptions())
	d := newTestDB(t, layout, "bad.db")
	d.insert(40, 100)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(40, 100)
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	// Damage the object behind the server's back, then through it.
	key := r.bucket.keys.ltx(d.name, 0, 3, 3)
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	data = data[:len(data)-20]
	if _, err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = srv
	out := filepath.Join(t.TempDir(), "out.db")
	if _, err := r.Restore(ctx, d.name, out); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("restore of a truncated object: %v; want an error naming %s", err, key)
	}
}

func TestS3StaleWriter(t *testing.T) {
	b, _ := newS3Backend(t)
	testStaleWriter(t, context.Background(), b)
}

// TestS3RacingWriters has two nodes, both believing they may write, upload
// different histories from the same starting point at the same moment.
// Each round exactly one must win; the loser writes nothing, and the
// bucket restores to the winner's database.
func TestS3RacingWriters(t *testing.T) {
	ctx := context.Background()
	b, _ := newS3Backend(t)
	la, lb := ferry.Layout{Dir: t.TempDir()}, ferry.Layout{Dir: t.TempDir()}
	ra, rb := New(b, la, testOptions()), New(b, lb, testOptions())
	da := newTestDB(t, la, "race.db")
	da.insert(5, 50)
	if err := ra.Sync(ctx, "race.db"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.db")
	pos, err := rb.Restore(ctx, "race.db", file)
	if err != nil {
		t.Fatal(err)
	}
	db := continueTestDB(t, lb, "race.db", file, pos)
	// Let B learn the bucket's head too.
	if err := rb.Sync(ctx, "race.db"); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 5; round++ {
		da.insert(3, 50)
		db.insert(4, 50)
		var wg sync.WaitGroup
		var errA, errB error
		wg.Add(2)
		go func() { defer wg.Done(); errA = ra.Sync(ctx, "race.db") }()
		go func() { defer wg.Done(); errB = rb.Sync(ctx, "race.db") }()
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: want exactly one winner; A: %v, B: %v", round, errA, errB)
		}
		winner, loserErr := da, errB
		if errA != nil {
			winner, loserErr = db, errA
		}
		t.Logf("round %d: loser: %v", round, loserErr)
		if !errors.Is(loserErr, ErrConflict) {
			t.Fatalf("round %d: loser's error %v does not match ErrConflict", round, loserErr)
		}
		out := filepath.Join(t.TempDir(), "out.db")
		got, err := ra.Restore(ctx, "race.db", out)
		if err != nil || got != winner.pos {
			t.Fatalf("round %d: restore %v %v; want the winner's %v", round, got, err, winner.pos)
		}
		mustEqualFile(t, out, winner.prev)
		// The loser rebuilds from the bucket and continues from there,
		// as a node does after losing a race.
		lost := db
		lostLayout, lostR := lb, rb
		if winner == db {
			lost, lostLayout, lostR = da, la, ra
		}
		_ = lost
		if err := os.RemoveAll(lostLayout.LTXDir("race.db")); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "again.db")
		pos, err := lostR.Restore(ctx, "race.db", file)
		if err != nil {
			t.Fatal(err)
		}
		fresh := continueTestDB(t, lostLayout, "race.db", file, pos)
		if winner == db {
			da = fresh
		} else {
			db = fresh
		}
	}
	if ra.Stats().Rejections+rb.Stats().Rejections != 5 {
		t.Fatalf("rejections not counted: %d + %d", ra.Stats().Rejections, rb.Stats().Rejections)
	}
}

// TestS3Restore100Tenants uploads 100 small databases and restores them
// all at once with bounded concurrency.
func TestS3Restore100Tenants(t *testing.T) {
	ctx := context.Background()
	b, _ := newS3Backend(t)
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, testOptions())
	const n = 100
	dbs := make([]*testDB, n)
	for i := range dbs {
		dbs[i] = newTestDB(t, layout, fmt.Sprintf("tenants/%03d.db", i))
		dbs[i].insert(i%7+1, 64)
	}
	if err := r.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range dbs {
		wg.Add(1)
		go func(d *testDB) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out := filepath.Join(dir, filepath.FromSlash(d.name))
			pos, err := r.Restore(ctx, d.name, out)
			if err == nil && pos != d.pos {
				err = fmt.Errorf("%s: restored %v, want %v", d.name, pos, d.pos)
			}
			if err == nil {
				got, rerr := os.ReadFile(out)
				if rerr != nil || !bytes.Equal(got, d.prev) {
					err = fmt.Errorf("%s: restored file differs (%v)", d.name, rerr)
				}
			}
			errs <- err
		}(d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("restored %d tenants in %v", n, time.Since(start))
}

// litestreamEnv is the environment for a litestream command against srv.
// A CA bundle setting makes Litestream's S3 client fail on a plain-HTTP
// endpoint, so it is dropped.
func litestreamEnv(srv *s3test.Server) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
}
