package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// streamBenchReport is what `ferry bench-stream` measures on a running
// cluster: how long a commit on the holder takes to be seen by a fresh
// query on a replica, how long a replica takes to catch up one large
// transaction, and the holder's commit rate with replicas attached and
// without.
type streamBenchReport struct {
	Lag        []streamLag `json:"lag"`
	CatchUp    *catchUp    `json:"catchUp,omitempty"`
	Throughput *throughput `json:"throughput,omitempty"`
}

type streamLag struct {
	Journal string        `json:"journal"`
	Commits int           `json:"commits"`
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	Max     time.Duration `json:"max"`
}

type catchUp struct {
	Rows int           `json:"rows"`
	Time time.Duration `json:"time"`
}

type throughput struct {
	Replicas      int     `json:"replicas"`
	Attached      float64 `json:"attachedPerSec"`
	None          float64 `json:"nonePerSec"`
	RatioAttached float64 `json:"ratio"`
}

// runBenchStream measures a cluster whose mounts are given as directories:
// the holder's first, then the replicas'.
func runBenchStream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	commits := fs.Int("commits", 1000, "single-row commits timed per journal mode")
	rows := fs.Int("rows", 100000, "rows of the one large transaction (0: skip)")
	duration := fs.Duration("duration", 3*time.Second, "length of each throughput run (0: skip)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry bench-stream [flags] HOLDER_MOUNT REPLICA_MOUNT...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || *commits < 1 {
		fs.Usage()
		return errors.New("need a holder mount, at least one replica mount and commits >= 1")
	}
	holder, replicas := fs.Arg(0), fs.Args()[1:]
	rep := &streamBenchReport{}
	for _, mode := range []string{"wal", "delete"} {
		l, err := benchLag(ctx, holder, replicas[0], mode, *commits)
		if err != nil {
			return fmt.Errorf("lag in %s mode: %w", mode, err)
		}
		rep.Lag = append(rep.Lag, l)
	}
	if *rows > 0 {
		c, err := benchCatchUp(ctx, holder, replicas[0], *rows)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		rep.CatchUp = c
	}
	if *duration > 0 {
		tp, err := benchThroughput(ctx, holder, replicas, *duration)
		if err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		rep.Throughput = tp
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, l := range rep.Lag {
		fmt.Fprintf(stdout, "lag %-6s %d commits: p50 %v  p99 %v  max %v\n", l.Journal, l.Commits, l.P50, l.P99, l.Max)
	}
	if c := rep.CatchUp; c != nil {
		fmt.Fprintf(stdout, "catch-up of one %d-row transaction: %v\n", c.Rows, c.Time)
	}
	if tp := rep.Throughput; tp != nil {
		fmt.Fprintf(stdout, "holder commits/s: %.0f with %d replicas attached, %.0f with none (%.2fx)\n", tp.Attached, tp.Replicas, tp.None, tp.RatioAttached)
	}
	return nil
}

// openBenchDB opens database name under mount with the given journal
// mode, or read-only when mode is empty: a replica must not create the
// file before it learns of the holder's.
func openBenchDB(mount, name, mode string) (*sql.DB, error) {
	params := "?_busy_timeout=5000&_journal_mode=" + mode
	if mode == "" {
		params = "?mode=ro&_busy_timeout=5000"
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(mount, name)+params)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// waitRows polls a fresh query on db until max(id) reaches want.
func waitRows(ctx context.Context, db *sql.DB, want int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var got sql.NullInt64
		err := db.QueryRowContext(ctx, "SELECT max(id) FROM t").Scan(&got)
		if err == nil && got.Int64 >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at row %d after %v, want %d (last error: %v)", got.Int64, limit, want, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// prepare creates a fresh table in name on the holder and waits until
// every replica has opened it and sees it.
func prepare(ctx context.Context, holder string, replicas []string, name, mode string) (*sql.DB, []*sql.DB, error) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		_ = os.Remove(filepath.Join(holder, name+suffix))
	}
	h, err := openBenchDB(holder, name, mode)
	if err != nil {
		return nil, nil, err
	}
	if _, err := h.ExecContext(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x')"); err != nil {
		h.Close()
		return nil, nil, err
	}
	var rs []*sql.DB
	for _, r := range replicas {
		var db *sql.DB
		deadline := time.Now().Add(time.Minute)
		for {
			// Reading the database makes the replica restore and follow it.
			db, err = openBenchDB(r, name, "")
			if err == nil {
				err = waitRows(ctx, db, 1, 2*time.Second)
			}
			if err == nil {
				break
			}
			if db != nil {
				db.Close()
			}
			if time.Now().After(deadline) {
				h.Close()
				return nil, nil, fmt.Errorf("replica %s never had %s: %w", r, name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		rs = append(rs, db)
	}
	return h, rs, nil
}

func benchLag(ctx context.Context, holder, replica, mode string, commits int) (streamLag, error) {
	name := "bench-lag-" + mode + ".db"
	h, rs, err := prepare(ctx, holder, []string{replica}, name, mode)
	if err != nil {
		return streamLag{}, err
	}
	defer h.Close()
	defer rs[0].Close()
	lags := make([]time.Duration, 0, commits)
	for i := 2; i < commits+2; i++ {
		start := time.Now()
		if _, err := h.ExecContext(ctx, "INSERT INTO t VALUES (?, 'x')", i); err != nil {
			return streamLag{}, err
		}
		if err := waitRows(ctx, rs[0], int64(i), 30*time.Second); err != nil {
			return streamLag{}, err
		}
		lags = append(lags, time.Since(start))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	return streamLag{
		Journal: strings.ToUpper(mode), Commits: commits,
		P50: lags[len(lags)/2], P99: lags[len(lags)*99/100], Max: lags[len(lags)-1],
	}, nil
}

func benchCatchUp(ctx context.Context, holder, replica string, rows int) (*catchUp, error) {
	name := "bench-catchup.db"
	h, rs, err := prepare(ctx, holder, []string{replica}, name, "wal")
	if err != nil {
		return nil, err
	}
	defer h.Close()
	defer rs[0].Close()
	start := time.Now()
	_, err = h.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO t SELECT i, printf('%050d', i) FROM n`, rows+1)
	if err != nil {
		return nil, err
	}
	if err := waitRows(ctx, rs[0], int64(rows+1), 5*time.Minute); err != nil {
		return nil, err
	}
	return &catchUp{Rows: rows, Time: time.Since(start)}, nil
}

// benchThroughput commits single rows on the holder for d into a database
// no replica follows, then into one every replica follows.
func benchThroughput(ctx context.Context, holder string, replicas []string, d time.Duration) (*throughput, error) {
	rate := func(name string, attach []string) (float64, error) {
		h, rs, err := prepare(ctx, holder, attach, name, "wal")
		if err != nil {
			return 0, err
		}
		defer h.Close()
		for _, r := range rs {
			defer r.Close()
		}
		n := 0
		start := time.Now()
		for time.Since(start) < d {
			if _, err := h.ExecContext(ctx, "INSERT INTO t(v) VALUES ('x')"); err != nil {
				return 0, err
			}
			n++
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	none, err := rate("bench-tp-none.db", nil)
	if err != nil {
		return nil, err
	}
	attached, err := rate("bench-tp-attached.db", replicas)
	if err != nil {
		return nil, err
	}
	return &throughput{Replicas: len(replicas), Attached: attached, None: none, RatioAttached: attached / none}, nil
}
