package fuse_test

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/fuse"
	_ "github.com/mattn/go-sqlite3"
)

// testMount is a store mounted in a temporary directory.
type testMount struct {
	t      testing.TB
	layout ferry.Layout
	store  *ferry.Store
	fs     *fuse.FS
	dir    string
}

// mount opens a store over dataDir and mounts it. Under CI a mount failure
// fails the test; elsewhere it skips, since FUSE may be unavailable.
func mount(t testing.TB, dataDir string, setup func(*ferry.Store)) *testMount {
	t.Helper()
	return mountOpts(t, dataDir, ferry.StoreOptions{}, setup)
}

// mountOpts is mount with a store configured by opts; the logger is set
// here.
func mountOpts(t testing.TB, dataDir string, opts ferry.StoreOptions, setup func(*ferry.Store)) *testMount {
	t.Helper()
	layout := ferry.Layout{Dir: dataDir}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger = logger
	store := ferry.NewStore(layout, opts)
	if setup != nil {
		setup(store)
	}
	if err := store.Open(context.Background()); err != nil {
		t.Fatalf("open store: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	fsys, err := fuse.Mount(store, fuse.Options{Dir: dir, Logger: logger, AllowOther: os.Getuid() == 0, Debug: os.Getenv("FERRY_FUSE_DEBUG") != ""})
	if err != nil {
		store.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount: %v", err)
		}
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	m := &testMount{t: t, layout: layout, store: store, fs: fsys, dir: dir}
	t.Cleanup(m.close)
	return m
}

func (m *testMount) close() {
	if m.fs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.fs.Unmount(ctx); err != nil {
		m.t.Errorf("unmount: %v", err)
	}
	if err := m.store.Close(); err != nil {
		m.t.Errorf("close store: %v", err)
	}
	m.fs = nil
}

// path returns the path of name inside the mount.
func (m *testMount) path(name string) string { return filepath.Join(m.dir, filepath.FromSlash(name)) }

// openDB opens a database through the mount with the given journal mode
// and synchronous setting.
func openDB(t testing.TB, path, journalMode, synchronous string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode="+journalMode+"&_synchronous="+synchronous+"&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("PRAGMA journal_mode=" + journalMode); err != nil {
		t.Fatalf("set journal mode: %v", err)
	}
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
