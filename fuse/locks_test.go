package fuse_test

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBlockingLocksAcrossProcesses takes a write lock on SQLite's PENDING
// byte range in this process and has another process wait for it with
// F_SETLKW: the kernel handles locks on the mount itself, across processes.
func TestBlockingLocksAcrossProcesses(t *testing.T) {
	python := needTool(t, "python3")
	m := mount(t, t.TempDir(), nil)
	db := openDB(t, m.path("l.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (v)")

	f, err := os.OpenFile(m.path("l.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0x40000000, Len: 1}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
		t.Fatalf("F_SETLKW: %v", err)
	}
	script := `
import fcntl, sys, time
f = open(sys.argv[1], "r+b")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0x40000000)
    print("got-nonblocking", flush=True)
except OSError:
    print("busy", flush=True)
t = time.time()
fcntl.lockf(f, fcntl.LOCK_EX, 1, 0x40000000)
print("got-after %.3f" % (time.time() - t), flush=True)
`
	cmd := exec.Command(python, "-c", script, m.path("l.db"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "busy" {
		t.Fatalf("first line %q, %v; want busy", line, err)
	}
	time.Sleep(200 * time.Millisecond)
	lk.Type = syscall.F_UNLCK
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	line, err = r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "got-after") {
		t.Fatalf("second line %q, %v", line, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
