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
}

const benchUsage = `Usage: ferry bench [flags] DIR

Measures SQLite through the Go driver in DIR, a directory inside a Ferry
mount, and in a plain-disk baseline directory in the same run, and prints
both with the ratio mount/plain. For WAL mode with synchronous=NORMAL and
DELETE mode with synchronous=FULL it reports small write transactions per
second (each one autocommit INSERT of a 100-byte row), their p50 and p99
commit latency, and point reads per second (SELECT by primary key).

Each measurement uses a fresh database file that is removed afterwards.

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
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return opt, errors.New("bench: want exactly one directory argument")
	}
	opt.Dir = fs.Arg(0)
	switch {
	case opt.Duration <= 0:
		return opt, fmt.Errorf("bench: -duration must be positive, not %v", opt.Duration)
	case opt.Reads < 1:
		return opt, fmt.Errorf("bench: -reads must be at least 1, not %d", opt.Reads)
	case opt.Writes < 1:
		return opt, fmt.Errorf("bench: -writes must be at least 1, not %d", opt.Writes)
	case opt.TableRows < 1:
		return opt, fmt.Errorf("bench: -rows must be at least 1, not %d", opt.TableRows)
	}
	return opt, nil
}

// runBenchmarks measures every mode in the mount and in the baseline,
// alternating between the two so that drift in the machine's speed over the
// run affects both alike.
func runBenchmarks(ctx context.Context, opt benchOptions, progress io.Writer) (*benchReport, error) {
	report := &benchReport{Duration: opt.Duration.String()}
	for _, mode := range benchModes() {
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
	return report, nil
}
