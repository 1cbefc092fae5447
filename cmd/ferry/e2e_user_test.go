package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobodyID is the user and group ID of "nobody" on Debian and most Linux
// systems, an account with no rights of its own.
const nobodyID = 65534

// TestE2EUnprivilegedUser runs the sqlite3 shell as an unprivileged user in
// a directory of the mount that user owns. That needs the mount's
// allow-other option and working ownership and permissions.
func TestE2EUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test starts processes as another user and must run as root")
	}
	m := startMount(t)
	// The mount point must be reachable by the other user.
	for _, d := range []string{filepath.Dir(filepath.Dir(m.Dir)), filepath.Dir(m.Dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := m.Path("users/nobody")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("mkdir in mount: %v", err)
	}
	if err := os.Chown(dir, nobodyID, nobodyID); err != nil {
		t.Fatalf("chown in mount: %v", err)
	}

	sqlite := func(script string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sqlite3", "-bail", "-batch", filepath.Join(dir, "app.db"))
		cmd.Dir = "/"
		cmd.Stdin = strings.NewReader(script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := sqlite("PRAGMA journal_mode=WAL;\nCREATE TABLE t (x);\nINSERT INTO t VALUES (1), (2), (3);\nSELECT sum(x) FROM t;\nPRAGMA wal_checkpoint(TRUNCATE);\n")
	if err != nil || out != "wal\n6\n0|0|0" {
		t.Fatalf("sqlite3 as nobody: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(dir, "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobodyID {
		t.Errorf("app.db is owned by uid %d; want %d, the user who created it", st.Uid, nobodyID)
	}

	// The user cannot write where it has no permission.
	if err := os.Chmod(filepath.Join(dir, "app.db"), 0o444); err != nil {
		t.Fatalf("chmod in mount: %v", err)
	}
	if out, err := sqlite("INSERT INTO t VALUES (4);\n"); err == nil {
		t.Fatalf("insert into a read-only file as nobody succeeded:\n%s", out)
	}

	// Mode 0 is a mode like any other: SQLite's own suite uses it to make
	// files unreadable.
	if err := os.Chmod(filepath.Join(dir, "app.db"), 0); err != nil {
		t.Fatalf("chmod in mount: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "app.db")); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0 {
		t.Fatalf("after chmod 000 the mount reports mode %v", fi.Mode())
	}
	if out, err := sqlite("SELECT count(*) FROM t;\n"); err == nil {
		t.Fatalf("reading a mode-000 file as nobody succeeded:\n%s", out)
	}
	checkReplay(t, m, "users/nobody/app.db")
}
