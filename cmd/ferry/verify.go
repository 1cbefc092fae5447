package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ferrydb/ferry"
)

// runVerify implements 'ferry verify': it recomputes a database's checksum
// from every page and compares it with the end of its local log.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("ferry verify", flag.ContinueOnError)
	fset.SetOutput(stderr)
	configPath := fset.String("config", "", "config file (YAML), for data.dir")
	dataDir := fset.String("data-dir", "", "data directory (overrides the config's data.dir)")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ferry verify [-config ferry.yml] [-data-dir DIR] NAME...")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return fmt.Errorf("verify: name a database")
	}
	cfg := NewConfig()
	if *configPath != "" {
		var err error
		if cfg, err = ReadConfig(*configPath); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if *dataDir != "" {
		cfg.Data.Dir = *dataDir
	}
	layout := ferry.Layout{Dir: cfg.Data.Dir}
	failed := 0
	for _, name := range fset.Args() {
		pos, sum, err := ferry.VerifyFiles(ctx, layout, name)
		if err != nil {
			// A transaction may have committed during the check.
			pos, sum, err = ferry.VerifyFiles(ctx, layout, name)
		}
		if err != nil {
			fmt.Fprintf(stdout, "%s: FAILED: %v\n", name, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%s: ok at %s (checksum %s)\n", name, pos, sum)
	}
	if failed > 0 {
		return fmt.Errorf("verify: %d of %d databases failed", failed, fset.NArg())
	}
	return nil
}
