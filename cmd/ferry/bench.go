package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// benchOptions are the flags of 'ferry bench'.
type benchOptions struct {
	Dir       string        // directory inside a Ferry mount
	Baseline  string        // plain-disk directory to compare against
	Duration  time.Duration // length of each measured phase
	Reads     int           // most point reads per phase
	Writes    int           // most write transactions per phase
	TableRows int           // rows in the table the point reads select from
	JSON      bool          // print JSON instead of a table

	Workloads    map[string]bool // which of basic, multi and bulk to run
	Tenants      int             // databases in the multi-tenant workload
	TenantWrites int             // autocommit INSERTs per tenant
	BulkRows     int             // rows in the bulk transaction

	IdleTenants int           // tenants the idle workload creates
	PID         int           // the mount's process, for the idle workload
	IdleWindow  time.Duration // how long the idle workload watches the mount
	KeepTenants bool          // leave the idle workload's tenants in the mount
}

const benchUsage = `Usage: ferry bench [flags] DIR

Measures SQLite through the Go driver in DIR, a directory inside a Ferry
mount, and in a plain-disk baseline directory in the same run, and prints
both with the ratio mount/plain. For WAL mode with synchronous=NORMAL and
DELETE mode with synchronous=FULL it reports small write transactions per
second (each one autocommit INSERT of a 100-byte row), their p50 and p99
commit latency, and point reads per second (SELECT by primary key).

Two more workloads run in both modes. "multi" creates -tenants databases
and commits -tenant-writes autocommit INSERTs to each, round-robin, and
reports transactions per second with the p50, p99 and maximum commit
latency; the mount and the baseline take turns round by round. "bulk" inserts -bulk-rows rows in one transaction and reports how
long it took. -workloads chooses which of basic, multi and bulk run.

"idle", run only when named, creates -idle-tenants databases (DELETE mode,
a table and one row each, closed one after another) in both places and
reports the creation rates. With -pid, the mount's process, it then
reports the mount's resident memory, open descriptors and threads, and
its CPU use over -idle-window while every tenant is idle. -keep-tenants
leaves the tenants in the mount, to measure a restart with them.

Each measurement uses fresh database files that are removed afterwards.

Flags:
`

// runBench implements 'ferry bench'.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opt, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	if opt.Baseline == "" {
		dir, err := os.MkdirTemp("", "ferry-bench-")
		if err != nil {
			return fmt.Errorf("bench: baseline directory: %w", err)
		}
		defer os.RemoveAll(dir)
		opt.Baseline = dir
	}
	for _, d := range []string{opt.Dir, opt.Baseline} {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("bench: %s is not a directory", d)
		}
	}

	report, err := runBenchmarks(ctx, opt, stderr)
	if err != nil {
		return err
	}
	if opt.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return report.WriteTable(stdout)
}

func parseBenchFlags(args []string, stderr io.Writer) (benchOptions, error) {
	opt := benchOptions{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opt.Baseline, "baseline", "", "plain-disk `directory` to compare against (default: a new temporary directory)")
	fs.DurationVar(&opt.Duration, "duration", 5*time.Second, "length of each measured phase")
	fs.IntVar(&opt.Reads, "reads", 5_000_000, "most point reads per phase")
	fs.IntVar(&opt.Writes, "writes", 1_000_000, "most write transactions per phase")
	fs.IntVar(&opt.TableRows, "rows", 10_000, "rows in the table the point reads select from")
	fs.BoolVar(&opt.JSON, "json", false, "print the results as JSON")
	workloads := fs.String("workloads", "basic,multi,bulk", "comma-separated `list` of the workloads to run: basic, multi, bulk, idle")
	fs.IntVar(&opt.Tenants, "tenants", 100, "databases in the multi-tenant workload")
	fs.IntVar(&opt.TenantWrites, "tenant-writes", 100, "autocommit INSERTs per database in the multi-tenant workload")
	fs.IntVar(&opt.BulkRows, "bulk-rows", 100_000, "rows the bulk workload inserts in one transaction")
	fs.IntVar(&opt.IdleTenants, "idle-tenants", 1000, "databases the idle workload creates")
	fs.IntVar(&opt.PID, "pid", 0, "process ID of the mount, for the idle workload's memory, descriptor and CPU figures")
	fs.DurationVar(&opt.IdleWindow, "idle-window", time.Minute, "how long the idle workload watches the mount's CPU use")
	fs.BoolVar(&opt.KeepTenants, "keep-tenants", false, "leave the idle workload's databases in the mount")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return opt, errors.New("bench: want exactly one directory argument")
	}
	opt.Dir = fs.Arg(0)
	opt.Workloads = map[string]bool{}
	for _, w := range strings.Split(*workloads, ",") {
		switch w = strings.TrimSpace(w); w {
		case "basic", "multi", "bulk", "idle":
			opt.Workloads[w] = true
		default:
			return opt, fmt.Errorf("bench: unknown workload %q in -workloads; want basic, multi, bulk or idle", w)
		}
	}
	switch {
	case opt.Duration <= 0:
		return opt, fmt.Errorf("bench: -duration must be positive, not %v", opt.Duration)
	case opt.Reads < 1:
		return opt, fmt.Errorf("bench: -reads must be at least 1, not %d", opt.Reads)
	case opt.Writes < 1:
		return opt, fmt.Errorf("bench: -writes must be at least 1, not %d", opt.Writes)
	case opt.TableRows < 1:
		return opt, fmt.Errorf("bench: -rows must be at least 1, not %d", opt.TableRows)
	case opt.Tenants < 1:
		return opt, fmt.Errorf("bench: -tenants must be at least 1, not %d", opt.Tenants)
	case opt.TenantWrites < 1:
		return opt, fmt.Errorf("bench: -tenant-writes must be at least 1, not %d", opt.TenantWrites)
	case opt.BulkRows < 1:
		return opt, fmt.Errorf("bench: -bulk-rows must be at least 1, not %d", opt.BulkRows)
	case opt.IdleTenants < 1:
		return opt, fmt.Errorf("bench: -idle-tenants must be at least 1, not %d", opt.IdleTenants)
	case opt.PID < 0:
		return opt, fmt.Errorf("bench: -pid must be a process ID, not %d", opt.PID)
	case opt.IdleWindow <= 0:
		return opt, fmt.Errorf("bench: -idle-window must be positive, not %v", opt.IdleWindow)
	}
	return opt, nil
}

// runBenchmarks measures every mode in the mount and in the baseline,
// alternating between the two so that drift in the machine's speed over the
// run affects both alike.
func runBenchmarks(ctx context.Context, opt benchOptions, progress io.Writer) (*benchReport, error) {
	report := &benchReport{Duration: opt.Duration.String()}
	for _, mode := range benchModes() {
		if !opt.Workloads["basic"] {
			break
		}
		var pair [2]benchResult
		for i, place := range []struct{ name, dir string }{{"mount", opt.Dir}, {"plain", opt.Baseline}} {
			fmt.Fprintf(progress, "bench: %s in %s (%s)\n", mode, place.name, place.dir)
			dir, err := filepath.Abs(place.dir)
			if err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			res, err := benchOne(ctx, mode, dir, opt)
			if err != nil {
				return nil, fmt.Errorf("bench: %s in %s: %w", mode, dir, err)
			}
			res.Place = place.name
			pair[i] = res
		}
		report.Results = append(report.Results, pair[0], pair[1])
		report.Ratios = append(report.Ratios, ratioOf(pair[0], pair[1]))
	}
	if !opt.Workloads["multi"] {
		opt.Tenants = 0
	}
	if !opt.Workloads["bulk"] {
		opt.BulkRows = 0
	}
	err := runWorkloads(ctx, opt, report, func(w string, mode benchMode) {
		fmt.Fprintf(progress, "bench: %s %s in %s and %s\n", w, mode, opt.Dir, opt.Baseline)
	})
	if err != nil {
		return nil, err
	}
	if opt.Workloads["idle"] {
		res, err := benchIdle(ctx, opt, progress)
		if err != nil {
			return nil, err
		}
		report.Idle = &res
	}
	return report, nil
}
