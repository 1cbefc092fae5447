package replicate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// buildBenchBucket uploads a database of about sizeMB megabytes with a
// snapshot and a tail of small transactions after it, the shape an
// on-demand restore meets.
func buildBenchBucket(b *testing.B, backend Backend, sizeMB int) (*Replicator, *testDB) {
	b.Helper()
	ctx := context.Background()
	clock := &fakeClock{now: time.Now()}
	opts := testOptions()
	opts.Now = clock.Now
	opts.SnapshotInterval = time.Minute
	layout := ferry.Layout{Dir: b.TempDir()}
	r := New(backend, layout, opts)
	d := newTestDB(b, layout, "bench.db")
	row := make([]byte, 512)
	for i := 0; i < sizeMB; i++ {
		tx, err := d.db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 1<<20/1024; j++ {
			_, _ = rand.Read(row)
			if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", hex.EncodeToString(row)); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		d.capture()
	}
	if err := r.Sync(ctx, d.name); err != nil {
		b.Fatal(err)
	}
	clock.Add(2 * time.Minute)
	if err := r.maintain(ctx, r.get(d.name)); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		d.insert(5, 100)
		if err := r.Sync(ctx, d.name); err != nil {
			b.Fatal(err)
		}
	}
	if len(r.get(d.name).files.levels[SnapshotLevel]) != 1 {
		b.Fatal("no snapshot")
	}
	return r, d
}

func benchmarkRestore(b *testing.B, backend Backend) {
	r, d := buildBenchBucket(b, backend, 10)
	ctx := context.Background()
	out := filepath.Join(b.TempDir(), "out.db")
	b.SetBytes(int64(len(d.prev)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pos, err := r.Restore(ctx, d.name, out)
		if err != nil || pos != d.pos {
			b.Fatalf("%v %v", pos, err)
		}
	}
	b.StopTimer()
	mustEqualFile(b, out, d.prev)
}

// BenchmarkRestore10MBS3 restores a 10 MB database (snapshot plus ten
// small change sets) from a local versitygw.
func BenchmarkRestore10MBS3(b *testing.B) {
	backend, _ := newS3Backend(b)
	benchmarkRestore(b, backend)
}

// BenchmarkRestore10MBFile restores the same from the file backend.
func BenchmarkRestore10MBFile(b *testing.B) {
	backend, err := NewFileBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	benchmarkRestore(b, backend)
}

// BenchmarkCopy10MBPlainDisk is the baseline: copying a 10 MB database
// file on plain disk, with the same temporary file, fsync and rename a
// restore does.
func BenchmarkCopy10MBPlainDisk(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src.db")
	data := make([]byte, 10<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.db")
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.CreateTemp(dir, "tmp-*")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := os.Rename(f.Name(), out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUploadBusyDatabase commits transactions to one database at
// about 500 per second for two seconds while the replicator runs with
// the default 1 s upload interval against versitygw, and reports the PUTs
// per 1,000 transactions.
func BenchmarkUploadBusyDatabase(b *testing.B) {
	backend, _ := newS3Backend(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		layout := ferry.Layout{Dir: b.TempDir()}
		opts := testOptions()
		opts.UploadInterval = time.Second
		r := New(backend, layout, opts)
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		d := newTestDB(b, layout, filepath.Join("busy", time.Now().Format("150405.000000")+".db"))
		end := time.Now().Add(2 * time.Second)
		for time.Now().Before(end) {
			r.Committed(d.name, d.insert(1, 100))
			time.Sleep(2 * time.Millisecond)
		}
		if err := r.Close(ctx); err != nil {
			b.Fatal(err)
		}
		st := r.Stats()
		b.ReportMetric(float64(st.Puts)*1000/float64(st.Transactions), "PUTs/1000tx")
		b.ReportMetric(float64(st.Transactions)/2, "tx/s")
	}
}
