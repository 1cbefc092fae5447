package main

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
	_ "github.com/mattn/go-sqlite3"
)

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	layout := ferry.Layout{Dir: dir}
	path := layout.DBPath("v/x.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (v); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	store := ferry.NewStore(layout, ferry.StoreOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := store.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runVerify(context.Background(), []string{"-data-dir", dir, "v/x.db"}, &out, &out); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "v/x.db: ok") {
		t.Fatalf("output %q", out.String())
	}

	// Change the database behind Ferry's back: verify must notice.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("corrupt"), 4096+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out.Reset()
	if err := runVerify(context.Background(), []string{"-data-dir", dir, "v/x.db", "nope.db", "../bad"}, &out, &out); err == nil {
		t.Fatalf("verify of a changed database passed:\n%s", out.String())
	}
	for _, want := range []string{"v/x.db: FAILED", "nope.db: FAILED", "../bad: FAILED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := runVerify(context.Background(), nil, &out, &out); err == nil {
		t.Fatal("verify with no name succeeded")
	}
}

func TestRunAppExitCode(t *testing.T) {
	code, err := runApp(context.Background(), []string{"/bin/sh", "-c", "exit 7"}, slog.New(slog.DiscardHandler))
	if err != nil || code != 7 {
		t.Fatalf("code %d, err %v; want 7", code, err)
	}
	if _, err := runApp(context.Background(), []string{"/nonexistent/app"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("running a missing program succeeded")
	}
}
