package replicate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/s3test"
	"github.com/ferrydb/ferry/ltx"
)

// ltxBinary finds superfly/ltx's command-line tool (v0.5.3, installed by
// scripts/setup.d/10-ltx.sh), failing under CI=true.
func ltxBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("ltx"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "ltx")
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	s3test.Require(t, fmt.Errorf("ltx CLI not installed (scripts/setup.d/10-ltx.sh): %v", err))
	return ""
}

// litestreamRestore runs stock `litestream restore` of a file replica and
// returns the database it wrote. txid zero means the newest.
func litestreamRestore(t *testing.T, replicaDir string, txid ltx.TXID) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "litestream.db")
	args := []string{"restore", "-o", out}
	if txid != 0 {
		args = append(args, "-txid", fmt.Sprintf("%016x", uint64(txid)))
	}
	args = append(args, "file://"+replicaDir)
	if b, err := exec.Command(litestreamBinary(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("litestream %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ltxApply rebuilds the database at txid with `ltx apply`: the newest
// snapshot at or before it, then the L0 files after the snapshot.
func ltxApply(t *testing.T, bk *Bucket, name string, txid ltx.TXID, root string) []byte {
	t.Helper()
	files, err := bk.list(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	var from ltx.TXID
	for _, fi := range files.levels[SnapshotLevel] {
		if fi.MaxTXID <= txid && fi.MaxTXID > from {
			from = fi.MaxTXID
			args = []string{filepath.Join(root, filepath.FromSlash(filePath(fi.Key)))}
		}
	}
	for _, fi := range files.levels[0] {
		if fi.MinTXID > from && fi.MaxTXID <= txid {
			args = append(args, filepath.Join(root, filepath.FromSlash(filePath(fi.Key))))
		}
	}
	out := filepath.Join(t.TempDir(), "ltx.db")
	cmd := exec.Command(ltxBinary(t), append([]string{"apply", "-db", out}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ltx apply %v: %v\n%s", args, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestPageSizeChangeRestores changes a real SQLite database's page size
// with VACUUM, down and then up, and its auto_vacuum mode, uploading after
// each step. Ferry's restore, stock `litestream restore` and `ltx apply`
// must each rebuild every uploaded state byte for byte, and maintenance
// must compact and snapshot the bucket without an error.
func TestPageSizeChangeRestores(t *testing.T) {
	ctx := t.Context()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions()
	opts.Now = clock.Now
	opts.Levels = []Level{{Level: 1, Interval: 10 * time.Second}}
	opts.SnapshotInterval = time.Hour
	root := filepath.Join(t.TempDir(), "bucket")
	b, err := NewFileBackend(root)
	if err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: t.TempDir()}
	r := New(b, layout, opts)
	d := newTestDB(t, layout, "tenants/ps.db")

	var marks []ltx.TXID // TXIDs where an upload ended
	sync := func() {
		t.Helper()
		if err := r.Sync(ctx, d.name); err != nil {
			t.Fatal(err)
		}
		marks = append(marks, d.pos.TXID)
	}
	pragma := func(stmt string) {
		t.Helper()
		if _, err := d.db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	d.insert(60, 300)
	sync()
	pragma("PRAGMA page_size=1024") // down
	d.execRaw("VACUUM")
	sync()
	d.insert(40, 300)
	sync()
	pragma("PRAGMA page_size=8192") // up, with more in the same upload
	d.execRaw("VACUUM")
	d.insert(5, 100)
	sync()
	pragma("PRAGMA auto_vacuum=FULL") // same page size, every page rewritten
	d.execRaw("VACUUM")
	sync()
	d.exec("DELETE FROM t WHERE id % 3 = 0")
	sync()

	files, err := r.bucket.list(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	var snaps []ltx.TXID
	for _, fi := range files.levels[SnapshotLevel] {
		snaps = append(snaps, fi.MaxTXID)
	}
	// One snapshot where each upload that changed the page size ended.
	if want := []ltx.TXID{marks[1], marks[3]}; fmt.Sprint(snaps) != fmt.Sprint(want) {
		t.Fatalf("snapshots at %v, want %v (uploads ended at %v)", snaps, want, marks)
	}

	replica := filepath.Join(root, "tenants", "ps.db")
	check := func(stage string) {
		t.Helper()
		for _, txid := range marks {
			out := filepath.Join(t.TempDir(), "ferry.db")
			pos, err := r.bucket.RestoreTo(ctx, d.name, out, RestoreOptions{TXID: txid})
			if err != nil {
				t.Fatalf("%s: ferry restore -txid %s: %v", stage, txid, err)
			}
			if pos.TXID != txid {
				t.Fatalf("%s: ferry restore -txid %s reached %s", stage, txid, pos.TXID)
			}
			mustEqualFile(t, out, d.history[txid])
			if got := litestreamRestore(t, replica, txid); !bytes.Equal(got, d.history[txid]) {
				t.Fatalf("%s: litestream restore -txid %s: %d bytes differ from the %d expected", stage, txid, len(got), len(d.history[txid]))
			}
		}
		out := filepath.Join(t.TempDir(), "newest.db")
		if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
			t.Fatalf("%s: restore: %v %v, want %v", stage, pos, err, d.pos)
		}
		mustEqualFile(t, out, d.prev)
		if got := litestreamRestore(t, replica, 0); !bytes.Equal(got, d.prev) {
			t.Fatalf("%s: litestream restore: %d bytes differ from the %d expected", stage, len(got), len(d.prev))
		}
	}
	check("after uploads")
	for _, txid := range marks {
		if got := ltxApply(t, r.bucket, d.name, txid, root); !bytes.Equal(got, d.history[txid]) {
			t.Fatalf("ltx apply up to %s: %d bytes differ from the %d expected", txid, len(got), len(d.history[txid]))
		}
	}

	// Maintenance: compaction into L1, a scheduled snapshot at the head,
	// and retention, all without an error.
	for i := 0; i < 8; i++ {
		clock.Add(11 * time.Minute)
		r.Committed(d.name, d.pos)
		r.tick(ctx)
	}
	if st := r.Stats(); st.LastError != "" {
		t.Fatalf("maintenance failed: %s", st.LastError)
	}
	files, err = r.bucket.list(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(files.levels[0]); n != 0 {
		t.Fatalf("%d L0 files left uncompacted: %+v", n, files.levels[0])
	}
	if levelMax(files, SnapshotLevel) != d.pos.TXID {
		t.Fatalf("no snapshot at the head %s: %+v", d.pos.TXID, files.levels[SnapshotLevel])
	}
	out := filepath.Join(t.TempDir(), "after.db")
	if pos, err := r.Restore(ctx, d.name, out); err != nil || pos != d.pos {
		t.Fatalf("restore after maintenance: %v %v, want %v", pos, err, d.pos)
	}
	mustEqualFile(t, out, d.prev)
	if got := litestreamRestore(t, replica, 0); !bytes.Equal(got, d.prev) {
		t.Fatal("litestream restore after maintenance differs")
	}
	keys := make([]string, 0)
	for _, lv := range files.levels {
		for _, fi := range lv {
			keys = append(keys, fi.Key)
		}
	}
	sort.Strings(keys)
	t.Logf("bucket after maintenance: %v", keys)
}
