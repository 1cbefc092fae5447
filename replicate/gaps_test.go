package replicate

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// replayLocalLog applies database name's local log, which must be one
// chain from TXID 1, onto an empty file and returns the file's path.
func replayLocalLog(t *testing.T, r *Replicator, name string) string {
	t.Helper()
	local, err := r.localFiles(name)
	if err != nil {
		t.Fatal(err)
	}
	a := newFileApplier(t)
	for _, f := range local {
		file, err := os.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.ApplyLTX(context.Background(), name, file)
		file.Close()
		if err != nil {
			t.Fatalf("replay local log at %s: %v", filepath.Base(f.Path), err)
		}
	}
	return a.path(name)
}

// TestLocalLogGapRefilled removes files from the middle of a stopped
// node's local log: the replicator's start refills each gap from the
// bucket, exactly where an object covers it and by replacing neighbours
// where the bucket's object is coarser, and names the gap it cannot fill.
func TestLocalLogGapRefilled(t *testing.T) {
	ctx := context.Background()
	r, layout, b := newFileReplicator(t, testOptions())
	d := newTestDB(t, layout, "gap.db")
	d.insert(10, 100) // 2; uploaded as 1-2
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d.insert(10, 100) // 3-5, uploaded as one object
	}
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(10, 100) // 6
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	d.insert(10, 100) // 7
	if err := r.Sync(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d.insert(10, 100) // 8-10, never uploaded
	}
	for _, txid := range []ltx.TXID{4, 6, 9} {
		if err := os.Remove(layout.LTXPath(d.name, txid, txid)); err != nil {
			t.Fatal(err)
		}
	}

	logs := &logBuffer{}
	opts := testOptions()
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r2 := New(b, layout, opts)
	if err := r2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(ctx); err != nil {
		t.Logf("close: %v", err) // the gap at 9 blocks the upload of 8-10
	}
	local, err := r2.localFiles(d.name)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range local {
		names = append(names, filepath.Base(f.Path))
	}
	gaps := findGaps(local)
	if len(gaps) != 1 || gaps[0].min != 9 || gaps[0].max != 9 {
		t.Fatalf("gaps after start: %v; want only TXID 9, which the bucket lacks (log: %v)", gaps, names)
	}
	if _, err := os.Stat(layout.LTXPath(d.name, 3, 5)); err != nil {
		t.Fatalf("3-5 not refilled from the bucket's object: %v (log: %v)", err, names)
	}
	if n := logs.count("level=ERROR", "0000000000000009-0000000000000009"); n == 0 {
		t.Fatalf("the gap the bucket cannot fill is not named in an error:\n%s", logs.buf.String())
	}
	for _, txid := range []ltx.TXID{8, 10} {
		if _, err := os.Stat(layout.LTXPath(d.name, txid, txid)); err != nil {
			t.Fatalf("local file %d, which the bucket lacks, is gone: %v", txid, err)
		}
	}

	// Up to the unfillable gap, the log replays to the database it logged.
	if err := os.Remove(layout.LTXPath(d.name, 10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(layout.LTXPath(d.name, 8, 8)); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, replayLocalLog(t, r2, d.name), d.history[7])
}
