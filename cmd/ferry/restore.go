package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
	"github.com/ferrydb/ferry/replicate"
)

const restoreUsage = `Usage: ferry restore [flags] <db> -o FILE [-txid N | -timestamp T]

Rebuilds database <db> (its path inside the mount, such as tenants/42.db)
from the bucket into FILE, verifying its checksum. FILE appears only once
the restore is complete.

The bucket comes from the bucket section of -config, overridden by the
bucket flags, and from the environment (BUCKET_NAME, AWS_ENDPOINT_URL_S3,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

Flags:
`

// runRestore implements 'ferry restore'.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, restoreUsage)
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "config file (YAML) whose bucket section to use")
		dataDir    = fs.String("data", "", "data directory, for the file backend's default path")
		output     = fs.String("o", "", "file to write the database to (required)")
		txidFlag   = fs.String("txid", "", "restore as of this transaction (decimal, or 16 hex digits as in LTX names)")
		tsFlag     = fs.String("timestamp", "", "restore the newest state committed before this time (RFC 3339)")
		force      = fs.Bool("f", false, "replace FILE if it exists")
		quiet      = fs.Bool("q", false, "print nothing on success (errors still go to stderr)")
		flags      BucketConfig
	)
	fs.StringVar(&flags.Type, "bucket-type", "", "bucket backend: file or s3")
	fs.StringVar(&flags.Path, "path", "", "file backend directory")
	fs.StringVar(&flags.Bucket, "bucket", "", "S3 bucket name")
	fs.StringVar(&flags.Endpoint, "endpoint", "", "S3 endpoint URL")
	fs.StringVar(&flags.Region, "region", "", "S3 region (default auto)")
	fs.BoolVar(&flags.ForcePathStyle, "force-path-style", false, "address the S3 bucket in the URL path")
	fs.StringVar(&flags.Prefix, "prefix", "", "key prefix in the bucket")

	// Flags may come before or after the database name.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return fmt.Errorf("restore: want exactly one database name, got %d", len(positional))
	}
	name := positional[0]
	if err := ferry.ValidateName(name); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if *output == "" {
		fs.Usage()
		return errors.New("restore: -o FILE is required")
	}
	var opts replicate.RestoreOptions
	if *txidFlag != "" {
		txid, err := parseTXID(*txidFlag)
		if err != nil {
			return fmt.Errorf("restore: -txid: %w", err)
		}
		opts.TXID = txid
	}
	if *tsFlag != "" {
		ts, err := time.Parse(time.RFC3339Nano, *tsFlag)
		if err != nil {
			return fmt.Errorf("restore: -timestamp: want RFC 3339, such as 2026-01-02T15:04:05Z: %w", err)
		}
		opts.Timestamp = ts
	}
	if opts.TXID != 0 && !opts.Timestamp.IsZero() {
		return errors.New("restore: use -txid or -timestamp, not both")
	}
	if _, err := os.Stat(*output); err == nil && !*force {
		return fmt.Errorf("restore: %s exists (use -f to replace it)", *output)
	}

	cfg := BucketConfig{}
	if *configPath != "" {
		full, err := ReadConfig(*configPath)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		cfg = full.Bucket
		// The file backend's default path lives in the data directory,
		// so restore finds the same bucket the mount wrote.
		if *dataDir == "" {
			*dataDir = full.Data.Dir
		}
	}
	if *dataDir == "" {
		*dataDir = DefaultDataDir
	}
	cfg = cfg.override(flags)
	backend, err := cfg.open(ctx, *dataDir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bucket := replicate.NewBucket(backend, cfg.Prefix, logger)

	if !*quiet {
		opts.Progress = progressPrinter(stderr)
	}
	start := time.Now()
	pos, err := bucket.RestoreTo(ctx, name, *output, opts)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stdout, "restored %s to %s at TXID %s (checksum %s, verified) in %v\n",
			name, *output, pos.TXID, pos.PostApplyChecksum, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// progressPrinter reports a large restore's progress every tenth.
func progressPrinter(w io.Writer) func(done, total int64) {
	const minSize = 8 << 20
	last := -1
	return func(done, total int64) {
		if total < minSize {
			return
		}
		tenth := int(done * 10 / total)
		if tenth == last {
			return
		}
		last = tenth
		fmt.Fprintf(w, "restore: %d%% (%.1f of %.1f MB)\n", tenth*10, float64(done)/1e6, float64(total)/1e6)
	}
}

// parseTXID accepts a decimal TXID or the 16 hex digits of an LTX name.
func parseTXID(s string) (ltx.TXID, error) {
	base := 10
	if len(s) == 16 {
		base = 16
	} else if strings.HasPrefix(s, "0x") {
		s, base = s[2:], 16
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("invalid TXID %q: want a positive decimal number or 16 hex digits", s)
	}
	return ltx.TXID(v), nil
}

// override replaces the fields set in o.
func (c BucketConfig) override(o BucketConfig) BucketConfig {
	if o.Type != "" {
		c.Type = o.Type
	}
	if o.Path != "" {
		c.Path = o.Path
	}
	if o.Bucket != "" {
		c.Bucket = o.Bucket
	}
	if o.Endpoint != "" {
		c.Endpoint = o.Endpoint
	}
	if o.Region != "" {
		c.Region = o.Region
	}
	if o.ForcePathStyle {
		c.ForcePathStyle = true
	}
	if o.Prefix != "" {
		c.Prefix = o.Prefix
	}
	return c
}
