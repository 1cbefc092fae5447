package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// benchMode is one journal mode and synchronous setting to measure.
type benchMode struct {
	Journal     string // PRAGMA journal_mode
	Synchronous string // PRAGMA synchronous
}

func (m benchMode) String() string { return m.Journal + " synchronous=" + m.Synchronous }

// benchModes are the settings applications most often run with: WAL with
// NORMAL, where SQLite syncs only at checkpoints, and the rollback journal
// with FULL, where every commit syncs.
func benchModes() []benchMode {
	return []benchMode{
		{Journal: "WAL", Synchronous: "NORMAL"},
		{Journal: "DELETE", Synchronous: "FULL"},
	}
}

// benchRowSize is the size of each row a write transaction inserts.
const benchRowSize = 100

// benchOne measures one mode in one directory, on a database of its own.
func benchOne(ctx context.Context, mode benchMode, dir string, opt benchOptions) (res benchResult, err error) {
	res.Journal, res.Synchronous, res.Dir = mode.Journal, mode.Synchronous, dir

	f, err := os.CreateTemp(dir, "ferry-bench-*.db")
	if err != nil {
		return res, fmt.Errorf("create database: %w", err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return res, err
	}
	defer func() {
		for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
			if rerr := os.Remove(path + suffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
				err = fmt.Errorf("remove %s: %w", filepath.Base(path+suffix), rerr)
			}
		}
	}()

	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	// One connection, as an application's writer would hold: every
	// statement then pays for its own locks and commit, and nothing else.
	db.SetMaxOpenConns(1)
	setup := []string{
		"PRAGMA journal_mode=" + mode.Journal,
		"PRAGMA synchronous=" + mode.Synchronous,
		"PRAGMA busy_timeout=5000",
		"CREATE TABLE bench (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
	}
	for _, q := range setup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return res, fmt.Errorf("%s: %w", q, err)
		}
	}
	var journal string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return res, fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(journal, mode.Journal) {
		return res, fmt.Errorf("journal mode is %q, want %q", journal, mode.Journal)
	}

	if err := benchWrites(ctx, db, opt, &res); err != nil {
		return res, err
	}
	if err := benchReads(ctx, db, opt, &res); err != nil {
		return res, err
	}
	return res, nil
}

// benchWrites runs single-row autocommit INSERTs until the phase's duration
// or write count runs out, and records each commit's latency.
func benchWrites(ctx context.Context, db *sql.DB, opt benchOptions, res *benchResult) error {
	row := make([]byte, benchRowSize)
	if _, err := rand.Read(row); err != nil {
		return err
	}
	stmt, err := db.PrepareContext(ctx, "INSERT INTO bench (v) VALUES (?)")
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer stmt.Close()

	lat := make([]time.Duration, 0, min(opt.Writes, 1<<20))
	start := time.Now()
	deadline := start.Add(opt.Duration)
	for i := 0; i < opt.Writes; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		t0 := time.Now()
		if t0.After(deadline) {
			break
		}
		// Vary the row a little so that no page compresses to nothing.
		row[i%benchRowSize]++
		if _, err := stmt.ExecContext(ctx, row); err != nil {
			return fmt.Errorf("insert %d: %w", i+1, err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	res.Writes = len(lat)
	res.WriteSeconds = elapsed.Seconds()
	res.WritesPerSec = float64(len(lat)) / elapsed.Seconds()
	slices.Sort(lat)
	res.P50Micros = percentile(lat, 50)
	res.P99Micros = percentile(lat, 99)
	return nil
}

// benchReads fills the table up to the configured row count in one
// transaction, then selects random rows by primary key, one autocommit read
// transaction each, until the phase's duration or read count runs out.
func benchReads(ctx context.Context, db *sql.DB, opt benchOptions, res *benchResult) error {
	if err := fillBenchTable(ctx, db, opt.TableRows); err != nil {
		return err
	}
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM bench").Scan(&rows); err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	stmt, err := db.PrepareContext(ctx, "SELECT v FROM bench WHERE id = ?")
	if err != nil {
		return fmt.Errorf("prepare select: %w", err)
	}
	defer stmt.Close()

	rng := mathrand.New(mathrand.NewPCG(1, 2))
	var v []byte
	n := 0
	start := time.Now()
	deadline := start.Add(opt.Duration)
	for ; n < opt.Reads; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if time.Now().After(deadline) {
				break
			}
		}
		id := rng.Int64N(rows) + 1
		if err := stmt.QueryRowContext(ctx, id).Scan(&v); err != nil {
			return fmt.Errorf("select id %d: %w", id, err)
		}
		if len(v) != benchRowSize {
			return fmt.Errorf("select id %d: got %d bytes, want %d", id, len(v), benchRowSize)
		}
	}
	elapsed := time.Since(start)
	res.Reads = n
	res.ReadSeconds = elapsed.Seconds()
	res.ReadsPerSec = float64(n) / elapsed.Seconds()
	return nil
}

// fillBenchTable inserts rows until the table holds at least n.
func fillBenchTable(ctx context.Context, db *sql.DB, n int) error {
	var have int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM bench").Scan(&have); err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	if have >= n {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("fill table: %w", err)
	}
	defer tx.Rollback()
	row := make([]byte, benchRowSize)
	if _, err := rand.Read(row); err != nil {
		return err
	}
	for i := have; i < n; i++ {
		row[i%benchRowSize]++
		if _, err := tx.ExecContext(ctx, "INSERT INTO bench (v) VALUES (?)", row); err != nil {
			return fmt.Errorf("fill table: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("fill table: commit: %w", err)
	}
	return nil
}

// percentile returns the p-th percentile of sorted in microseconds, or 0
// for no samples.
func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted) - 1) * p / 100
	return float64(sorted[i].Nanoseconds()) / 1e3
}
