package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// killWait bounds how long a process may take to die after SIGKILL. A
// process still alive after it is stuck in the kernel, which for a FUSE
// daemon usually means waiting on a request to its own mount.
const killWait = 10 * time.Second

// kill ends `ferry mount` with SIGKILL, as the OOM killer or a crash would,
// and detaches its mount, which a killed FUSE daemon leaves behind dead.
// When the process does not die (stuck in the kernel, in D state), kill
// aborts the mount's FUSE connection to free it and returns an error that
// says so: a hang is a failure to report, never one to wait out.
func (m *testMount) kill() error {
	// The connection's number must be read while the mount is listed.
	conn, connErr := fuseConnection(m.Dir)
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-m.done:
		return detach(m.Dir)
	case <-time.After(killWait):
	}
	state := procState(m.cmd.Process.Pid)
	stack := kernelStack(m.cmd.Process.Pid)
	abortErr := connErr
	if abortErr == nil {
		abortErr = abortFUSE(conn)
	}
	_ = detach(m.Dir)
	select {
	case <-m.done:
	case <-time.After(killWait):
		return fmt.Errorf("ferry mount (pid %d) did not die within %v of SIGKILL (state %s), nor after its FUSE connection was aborted (%v); kernel stack:\n%s",
			m.cmd.Process.Pid, killWait, state, abortErr, stack)
	}
	return fmt.Errorf("ferry mount (pid %d) hung for %v after SIGKILL (state %s) until its FUSE connection was aborted (%v); kernel stack:\n%s",
		m.cmd.Process.Pid, killWait, state, abortErr, stack)
}

// killProcess ends cmd (started by the test) with SIGKILL and waits for it,
// up to killWait; done is closed when cmd.Wait has returned.
func killProcess(cmd *exec.Cmd, done <-chan struct{}) error {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) did not die within %v of SIGKILL (state %s); kernel stack:\n%s",
			filepath.Base(cmd.Path), cmd.Process.Pid, killWait, procState(cmd.Process.Pid), kernelStack(cmd.Process.Pid))
	}
}

// detach lazily unmounts dir if it is still mounted (umount -l).
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("detach %s: %w", dir, err)
	}
	return nil
}

// fuseConnection returns the number of the FUSE connection mounted at dir:
// the minor device number of the mount, which names its directory under
// /sys/fs/fuse/connections.
func fuseConnection(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			_, minor, ok := strings.Cut(fields[2], ":")
			if !ok {
				return "", fmt.Errorf("mountinfo: bad device %q for %s", fields[2], dir)
			}
			return minor, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s is not mounted", dir)
}

// abortFUSE aborts FUSE connection conn through the fusectl filesystem,
// mounting it first if needed: every request waiting on the connection
// fails, which frees a daemon stuck on a request to its own mount.
func abortFUSE(conn string) error {
	const ctl = "/sys/fs/fuse/connections"
	abort := filepath.Join(ctl, conn, "abort")
	if _, err := os.Stat(abort); errors.Is(err, os.ErrNotExist) {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	if err := os.WriteFile(abort, []byte("1"), 0o200); err != nil {
		return fmt.Errorf("abort FUSE connection %s: %w", conn, err)
	}
	return nil
}

// procState is the state letter and name of process pid, from
// /proc/PID/status ("D (disk sleep)" for a process stuck in the kernel).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelStack is where each thread of process pid waits in the kernel,
// for the failure message of a process that does not die.
func kernelStack(pid int) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stack", pid))
	var b strings.Builder
	for i, p := range tasks {
		if i == 8 {
			fmt.Fprintf(&b, "(%d more threads)\n", len(tasks)-i)
			break
		}
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s:\n%s", p, st)
	}
	return b.String()
}

// runBounded runs a program that works through mount m, and returns its
// combined output. A program still running after timeout is killed; one
// that cannot even be killed is stuck on the mount, whose FUSE connection
// is then aborted to free it, and the error says so. The test never waits
// on the mount without a bound.
func runBounded(m *testMount, timeout time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	var err error
	go func() {
		err = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s: %w", name, err)
		}
		return out.String(), nil
	case <-time.After(timeout):
	}
	state, stack := procState(cmd.Process.Pid), kernelStack(cmd.Process.Pid)
	if kerr := killProcess(cmd, done); kerr != nil {
		conn, cerr := fuseConnection(m.Dir)
		if cerr == nil {
			cerr = abortFUSE(conn)
		}
		return out.String(), fmt.Errorf("%s hung on the mount for %v (state %s), and could not be killed until its FUSE connection was aborted (%v); kernel stack:\n%s",
			name, timeout, state, cerr, stack)
	}
	return out.String(), fmt.Errorf("%s did not finish within %v (state %s); kernel stack:\n%s", name, timeout, state, stack)
}
