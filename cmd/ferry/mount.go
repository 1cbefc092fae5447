package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/fuse"
)

// shutdownTimeout bounds the unmount and the services' shutdown.
const shutdownTimeout = 30 * time.Second

// runMount implements 'ferry mount': it opens the store, starts the
// services, mounts the filesystem and, if exec is set, runs the
// application until it exits.
func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("ferry mount", flag.ContinueOnError)
	fset.SetOutput(stderr)
	configPath := fset.String("config", "", "config file (YAML); without it every default applies")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ferry mount [-config ferry.yml]")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		fset.Usage()
		return fmt.Errorf("mount: unexpected arguments %q", fset.Args())
	}
	cfg := NewConfig()
	if *configPath != "" {
		var err error
		if cfg, err = ReadConfig(*configPath); err != nil {
			return fmt.Errorf("mount: %w", err)
		}
	}
	logger := cfg.Log.newLogger(stderr)

	code, err := mount(ctx, cfg, logger)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if code != 0 {
		// The application's exit code is Ferry's.
		os.Exit(code)
	}
	return nil
}

// mount runs the mount until ctx ends or the application exits, and
// returns the application's exit code.
func mount(ctx context.Context, cfg *Config, logger *slog.Logger) (code int, err error) {
	store := ferry.NewStore(ferry.Layout{Dir: cfg.Data.Dir}, ferry.StoreOptions{
		Logger:    logger,
		Retention: cfg.Data.Retention,
		// A bucket is always configured (a local directory by default),
		// so the local log keeps what the bucket does not hold yet.
		KeepUntilUploaded: true,
	})
	stopServices, m, err := startServices(ctx, cfg, store, logger)
	if err != nil {
		return 0, fmt.Errorf("start services: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if serr := stopServices(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop services: %w", serr))
		}
	}()
	if err := store.Open(ctx); err != nil {
		return 0, fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()
	fsys, err := fuse.Mount(store, fuse.Options{
		Dir:        cfg.FUSE.Dir,
		AllowOther: cfg.FUSE.AllowOther,
		Debug:      cfg.FUSE.Debug,
		Logger:     logger,
		CountOp:    m.CountFUSEOp,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if uerr := fsys.Unmount(uctx); uerr != nil {
			err = errors.Join(err, uerr)
		}
		logger.Info("unmounted", "dir", cfg.FUSE.Dir)
	}()

	if len(cfg.Exec) == 0 {
		<-ctx.Done()
		return 0, nil
	}
	return runApp(ctx, cfg.Exec, logger)
}

// forwardedSignals are passed on to the application.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// runApp runs the application, passing signals to it, and returns its exit
// code.
func runApp(ctx context.Context, argv []string, logger *slog.Logger) (int, error) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec %q: %w", argv, err)
	}
	logger.Info("started application", "pid", cmd.Process.Pid, "argv", argv)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			logger.Info("passing signal to application", "signal", sig)
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code := exitErr.ExitCode()
				if code < 0 {
					code = 128 + int(exitErr.Sys().(syscall.WaitStatus).Signal())
				}
				logger.Info("application exited", "code", code)
				return code, nil
			} else if err != nil {
				return 0, fmt.Errorf("wait for application: %w", err)
			}
			logger.Info("application exited", "code", 0)
			return 0, nil
		}
	}
}
