package fuse_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
)

// BenchmarkWALCaptureLag measures how long after a WAL-mode commit returns
// to the application the store has captured it, with the WAL followed by
// polling alone and with the kernel telling of each write. Each commit
// waits for its capture before the next, so every one is measured from an
// idle start.
func BenchmarkWALCaptureLag(b *testing.B) {
	for _, tc := range []struct {
		name    string
		noWatch bool
	}{{"poll", true}, {"watch", false}} {
		b.Run(tc.name, func(b *testing.B) {
			captured := newCaptureLog()
			m := mountOpts(b, b.TempDir(), ferry.StoreOptions{NoWALWatch: tc.noWatch}, func(s *ferry.Store) {
				s.AddCaptureListener(captured)
			})
			db := openDB(b, m.path("lag.db"), "wal", "normal")
			mustExec(b, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
			stmt, err := db.Prepare("INSERT INTO t (v) VALUES (?)")
			if err != nil {
				b.Fatal(err)
			}
			defer stmt.Close()
			txid := m.store.DB("lag.db").Pos().TXID
			lags := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := stmt.Exec(benchRow); err != nil {
					b.Fatal(err)
				}
				returned := time.Now()
				txid++
				at, ok := captured.wait("lag.db", txid, captureWait)
				if !ok {
					b.Fatalf("TXID %d not captured within %v", txid, captureWait)
				}
				lags = append(lags, max(0, at.Sub(returned)))
			}
			b.StopTimer()
			slices.Sort(lags)
			b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkWALWatchCommit measures WAL-mode commits on plain disk and
// through the mount with and without the kernel telling the store of each
// write, so that one run shows what watching costs the writer.
func BenchmarkWALWatchCommit(b *testing.B) {
	b.Run("disk", func(b *testing.B) { benchCommits(b, b.TempDir(), "wal", "normal") })
	b.Run("mount-poll", func(b *testing.B) {
		m := mountOpts(b, b.TempDir(), ferry.StoreOptions{NoWALWatch: true}, nil)
		benchCommits(b, m.dir, "wal", "normal")
	})
	b.Run("mount-watch", func(b *testing.B) {
		m := mount(b, b.TempDir(), nil)
		benchCommits(b, m.dir, "wal", "normal")
	})
}
