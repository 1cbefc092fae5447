package fuse_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// needTool returns the path of a client program, failing under CI when it
// is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestTwoProcessesWriting runs two sqlite3 CLI processes and the Go driver
// inserting into one database at once, in each journal mode; SQLite's
// locks, handled by the kernel, must serialize them.
func TestTwoProcessesWriting(t *testing.T) {
	sqlite := needTool(t, "sqlite3")
	python := needTool(t, "python3")
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			m := mount(t, t.TempDir(), nil)
			path := m.path("shared.db")
			db := openDB(t, path, mode, "normal")
			mustExec(t, db, "CREATE TABLE t (who TEXT, n INTEGER)")

			const perWriter = 150
			var script strings.Builder
			script.WriteString(".timeout 10000\n")
			for i := 0; i < perWriter; i++ {
				fmt.Fprintf(&script, "INSERT INTO t VALUES ('cli', %d);\n", i)
			}
			pyScript := fmt.Sprintf(`
import sqlite3
c = sqlite3.connect(%q, timeout=10, isolation_level=None)
for i in range(%d):
    c.execute("INSERT INTO t VALUES ('py', ?)", (i,))
c.close()
`, path, perWriter)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			wg.Add(3)
			go func() {
				defer wg.Done()
				cmd := exec.CommandContext(ctx, sqlite, path)
				cmd.Stdin = strings.NewReader(script.String())
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("sqlite3: %v: %s", err, out)
				}
			}()
			go func() {
				defer wg.Done()
				if out, err := exec.CommandContext(ctx, python, "-c", pyScript).CombinedOutput(); err != nil {
					errs <- fmt.Errorf("python: %v: %s", err, out)
				}
			}()
			go func() {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					if _, err := db.Exec("INSERT INTO t VALUES ('go', ?)", i); err != nil {
						errs <- fmt.Errorf("go: %w", err)
						return
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 3*perWriter {
				t.Fatalf("rows = %d, %v; want %d", n, err, 3*perWriter)
			}
			var ok string
			if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
				t.Fatalf("integrity_check = %q, %v", ok, err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if pos := mustPos(t, m, "shared.db"); pos.TXID < 3*perWriter+1 {
				t.Fatalf("TXID %d, want at least %d", pos.TXID, 3*perWriter+1)
			}
			checkReplay(t, m, "shared.db")
		})
	}
}

// TestExclusiveLockingModeWAL uses locking_mode=EXCLUSIVE in WAL mode,
// which needs no shared memory mapping across processes.
func TestExclusiveLockingModeWAL(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	db := openDB(t, m.path("excl.db"), "wal", "normal")
	mustExec(t, db, "PRAGMA locking_mode=EXCLUSIVE")
	mustExec(t, db, "CREATE TABLE t (v)")
	for i := 0; i < 50; i++ {
		mustExec(t, db, "INSERT INTO t VALUES (?)", i)
	}
	mustExec(t, db, "PRAGMA wal_checkpoint(TRUNCATE)")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, m, "excl.db")
}
