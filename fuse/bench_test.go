package fuse_test

import (
	"database/sql"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
)

// benchTargets runs fn on plain local disk and through the mount, so that
// one run gives both numbers and their ratio.
func benchTargets(b *testing.B, fn func(b *testing.B, dir string)) {
	b.Run("disk", func(b *testing.B) { fn(b, b.TempDir()) })
	b.Run("mount", func(b *testing.B) {
		m := mount(b, b.TempDir(), nil)
		fn(b, m.dir)
	})
}

const benchRow = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"

// BenchmarkCommit measures small write transactions: one autocommit INSERT
// of a 100-byte row.
func BenchmarkCommit(b *testing.B) {
	for _, tc := range []struct{ mode, sync string }{{"wal", "normal"}, {"delete", "full"}} {
		b.Run(tc.mode+"-"+tc.sync, func(b *testing.B) {
			benchTargets(b, func(b *testing.B, dir string) { benchCommits(b, dir, tc.mode, tc.sync) })
		})
	}
}

// benchCommits commits b.N single-row inserts to a database in dir.
func benchCommits(b *testing.B, dir, mode, sync string) {
	db := openDB(b, filepath.Join(dir, "bench.db"), mode, sync)
	mustExec(b, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	stmt, err := db.Prepare("INSERT INTO t (v) VALUES (?)")
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := stmt.Exec(benchRow); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// BenchmarkPointRead measures SELECTs by primary key.
func BenchmarkPointRead(b *testing.B) {
	for _, mode := range []string{"wal", "delete"} {
		b.Run(mode, func(b *testing.B) {
			benchTargets(b, func(b *testing.B, dir string) {
				db := openDB(b, filepath.Join(dir, "bench.db"), mode, "normal")
				const rows = 10000
				fill(b, db, rows)
				stmt, err := db.Prepare("SELECT v FROM t WHERE id = ?")
				if err != nil {
					b.Fatal(err)
				}
				defer stmt.Close()
				rng := rand.New(rand.NewSource(1))
				var v string
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := stmt.QueryRow(1 + rng.Intn(rows)).Scan(&v); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			})
		})
	}
}

func fill(b *testing.B, db *sql.DB, rows int) {
	mustExec(b, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprint(benchRow, i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
