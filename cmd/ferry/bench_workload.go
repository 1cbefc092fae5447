package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// workloadResult is one workload in one mode measured in one place.
type workloadResult struct {
	Workload    string  `json:"workload"` // "multi" or "bulk"
	Journal     string  `json:"journalMode"`
	Synchronous string  `json:"synchronous"`
	Place       string  `json:"place"`
	Tx          int     `json:"transactions"`
	Seconds     float64 `json:"seconds"`
	TxPerSec    float64 `json:"txPerSec"`
	P50Micros   float64 `json:"commitP50Micros"`
	P99Micros   float64 `json:"commitP99Micros"`
	MaxMicros   float64 `json:"commitMaxMicros"`
}

// workloadRatio compares a workload in the mount with plain disk: TxPerSec
// above 1 means the mount is faster, Seconds and latencies above 1 mean it
// is slower.
type workloadRatio struct {
	Workload    string  `json:"workload"`
	Journal     string  `json:"journalMode"`
	Synchronous string  `json:"synchronous"`
	TxPerSec    float64 `json:"txPerSec"`
	Seconds     float64 `json:"seconds"`
	P50         float64 `json:"commitP50"`
	P99         float64 `json:"commitP99"`
	Max         float64 `json:"commitMax"`
}

func workloadRatioOf(mount, plain workloadResult) workloadRatio {
	return workloadRatio{
		Workload: mount.Workload, Journal: mount.Journal, Synchronous: mount.Synchronous,
		TxPerSec: safeRatio(mount.TxPerSec, plain.TxPerSec),
		Seconds:  safeRatio(mount.Seconds, plain.Seconds),
		P50:      safeRatio(mount.P50Micros, plain.P50Micros),
		P99:      safeRatio(mount.P99Micros, plain.P99Micros),
		Max:      safeRatio(mount.MaxMicros, plain.MaxMicros),
	}
}

// openBenchDB creates the database at path and its bench table in the
// given mode, with one connection as an application's writer holds.
func openBenchDB(ctx context.Context, path string, mode benchMode) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"PRAGMA journal_mode=" + mode.Journal,
		"PRAGMA synchronous=" + mode.Synchronous,
		"PRAGMA busy_timeout=5000",
		"CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %s: %w", filepath.Base(path), q, err)
		}
	}
	return db, nil
}

// removeBenchDB removes a database and its journals.
func removeBenchDB(path string) error {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", filepath.Base(path+suffix), err)
		}
	}
	return nil
}

// benchMulti creates opt.Tenants databases in each of the mount and the
// baseline and commits opt.TenantWrites autocommit INSERTs to each,
// round-robin, the way a server of many small tenants writes. The two
// places take turns round by round, so that the machine's other load
// falls on both alike.
func benchMulti(ctx context.Context, mode benchMode, dirs [2]string, opt benchOptions) (res [2]workloadResult, err error) {
	type place struct {
		stmts []*sql.Stmt
		lat   []time.Duration
		took  time.Duration
	}
	var places [2]place
	for i, dir := range dirs {
		res[i] = workloadResult{Workload: "multi", Journal: mode.Journal, Synchronous: mode.Synchronous}
		tmp, err := os.MkdirTemp(dir, "ferry-bench-multi-")
		if err != nil {
			return res, fmt.Errorf("create directory: %w", err)
		}
		defer func() {
			if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
				err = fmt.Errorf("remove %s: %w", tmp, rerr)
			}
		}()
		for t := 0; t < opt.Tenants; t++ {
			db, err := openBenchDB(ctx, filepath.Join(tmp, fmt.Sprintf("tenant-%05d.db", t)), mode)
			if err != nil {
				return res, err
			}
			defer db.Close()
			stmt, err := db.PrepareContext(ctx, "INSERT INTO bench (v) VALUES (?)")
			if err != nil {
				return res, fmt.Errorf("prepare insert: %w", err)
			}
			places[i].stmts = append(places[i].stmts, stmt)
		}
		places[i].lat = make([]time.Duration, 0, opt.Tenants*opt.TenantWrites)
	}
	row := make([]byte, benchRowSize)
	if _, err := rand.Read(row); err != nil {
		return res, err
	}
	for r := 0; r < opt.TenantWrites; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		for i := range places {
			p := &places[i]
			start := time.Now()
			for t, stmt := range p.stmts {
				row[(r+t)%benchRowSize]++
				t0 := time.Now()
				if _, err := stmt.ExecContext(ctx, row); err != nil {
					return res, fmt.Errorf("%s: tenant %d insert %d: %w", dirs[i], t, r+1, err)
				}
				p.lat = append(p.lat, time.Since(t0))
			}
			p.took += time.Since(start)
		}
	}
	for i := range places {
		res[i].setLatencies(places[i].lat, places[i].took)
	}
	return res, nil
}

// benchBulk inserts opt.BulkRows rows in one transaction into a new
// database and reports how long the transaction took, BEGIN to COMMIT.
func benchBulk(ctx context.Context, mode benchMode, dir string, opt benchOptions) (res workloadResult, err error) {
	res = workloadResult{Workload: "bulk", Journal: mode.Journal, Synchronous: mode.Synchronous}
	f, err := os.CreateTemp(dir, "ferry-bench-bulk-*.db")
	if err != nil {
		return res, fmt.Errorf("create database: %w", err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return res, err
	}
	defer func() {
		if rerr := removeBenchDB(path); rerr != nil && err == nil {
			err = rerr
		}
	}()
	db, err := openBenchDB(ctx, path, mode)
	if err != nil {
		return res, err
	}
	defer db.Close()
	row := make([]byte, benchRowSize)
	if _, err := rand.Read(row); err != nil {
		return res, err
	}
	start := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO bench (v) VALUES (?)")
	if err != nil {
		return res, fmt.Errorf("prepare insert: %w", err)
	}
	for i := 0; i < opt.BulkRows; i++ {
		row[i%benchRowSize]++
		if _, err := stmt.ExecContext(ctx, row); err != nil {
			return res, fmt.Errorf("insert %d: %w", i+1, err)
		}
	}
	t0 := time.Now()
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	commit := time.Since(t0)
	res.setLatencies([]time.Duration{commit}, time.Since(start))
	return res, nil
}

// setLatencies fills in the counts and latency figures from the commit
// latencies lat and the workload's elapsed time.
func (r *workloadResult) setLatencies(lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	r.Tx = len(lat)
	r.Seconds = elapsed.Seconds()
	r.TxPerSec = float64(len(lat)) / elapsed.Seconds()
	r.P50Micros = percentile(lat, 50)
	r.P99Micros = percentile(lat, 99)
	r.MaxMicros = percentile(lat, 100)
}

// runWorkloads runs the multi-tenant and bulk workloads in every mode, in
// the mount and on plain disk.
func runWorkloads(ctx context.Context, opt benchOptions, report *benchReport, progress func(string, benchMode)) error {
	var dirs [2]string
	for i, d := range []string{opt.Dir, opt.Baseline} {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		dirs[i] = abs
	}
	bulk := func(ctx context.Context, mode benchMode, dirs [2]string, opt benchOptions) (pair [2]workloadResult, err error) {
		for i, dir := range dirs {
			if pair[i], err = benchBulk(ctx, mode, dir, opt); err != nil {
				return pair, fmt.Errorf("%s: %w", dir, err)
			}
		}
		return pair, nil
	}
	type workload struct {
		name string
		on   bool
		run  func(context.Context, benchMode, [2]string, benchOptions) ([2]workloadResult, error)
	}
	for _, w := range []workload{{"multi", opt.Tenants > 0, benchMulti}, {"bulk", opt.BulkRows > 0, bulk}} {
		if !w.on {
			continue
		}
		for _, mode := range benchModes() {
			progress(w.name, mode)
			pair, err := w.run(ctx, mode, dirs, opt)
			if err != nil {
				return fmt.Errorf("bench: %s %s: %w", w.name, mode, err)
			}
			pair[0].Place, pair[1].Place = "mount", "plain"
			report.Workloads = append(report.Workloads, pair[0], pair[1])
			report.WorkloadRatios = append(report.WorkloadRatios, workloadRatioOf(pair[0], pair[1]))
		}
	}
	return nil
}
