package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ferryBin is the ferry binary the end-to-end tests drive, built once per
// test binary by TestMain. The tests use it exactly as an operator would.
var ferryBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// e2eSecretEnv holds the cluster secret of the test mounts; newTestMount
// gives every mount the cluster section e2eCluster unless its extra YAML
// has a cluster section of its own.
const (
	e2eSecretEnv = "FERRY_TEST_CLUSTER_SECRET"
	e2eCluster   = "cluster:\n  id: ferry-e2e\n  secret-env: " + e2eSecretEnv + "\n"
)

func runTests(m *testing.M) int {
	// The mounts inherit it, and so do `ferry status` and `ferry handoff`
	// run in this process.
	if err := os.Setenv(e2eSecretEnv, "e2e-cluster-secret-0123"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/ferry:", err)
		return 1
	}
	return m.Run()
}

// testMount is a running `ferry mount` process with its own mount point and
// data directory.
type testMount struct {
	Dir     string // the mount point
	DataDir string // data.dir
	Config  string // path of the ferry.yml the process runs with

	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // the process's exit status, once done is closed
}

// syncBuffer collects a child's output, which is written from exec's copy
// goroutine and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startMount starts `ferry mount -config FILE` with a fresh mount point and
// data directory, waits until the kernel lists the mount, and stops it with
// SIGTERM when the test ends. It fails the test if the mount does not come
// up: these tests exist to exercise the real mount, so there is nothing to
// skip to.
func startMount(t *testing.T) *testMount {
	t.Helper()
	return startMountWith(t, "")
}

// startMountWith is startMount with extra YAML appended to the config.
func startMountWith(t *testing.T, extra string) *testMount {
	t.Helper()
	m := newTestMount(t, extra)
	m.start(t)
	return m
}

// startMountAt is startMountWith on the data directory dataDir, which a
// test may have prepared.
func startMountAt(t *testing.T, dataDir, extra string) *testMount {
	t.Helper()
	m := newTestMountAt(t, dataDir, extra)
	m.start(t)
	return m
}

// newTestMount prepares a mount point, a data directory and the config of
// a `ferry mount` process, with extra YAML appended, without starting it:
// a test can put files in the data directory first, then call start.
func newTestMount(t *testing.T, extra string) *testMount {
	t.Helper()
	return newTestMountAt(t, filepath.Join(t.TempDir(), "data"), extra)
}

// newTestMountAt is newTestMount on the data directory dataDir.
func newTestMountAt(t *testing.T, dataDir, extra string) *testMount {
	t.Helper()
	root := t.TempDir()
	m := &testMount{
		Dir:     filepath.Join(root, "mnt"),
		DataDir: dataDir,
		Config:  filepath.Join(root, "ferry.yml"),
	}
	for _, d := range []string{m.Dir, m.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf("fuse:\n  dir: %q\n  allow-other: true\ndata:\n  dir: %q\n", m.Dir, m.DataDir) + extra
	if !strings.HasPrefix(extra, "cluster:") && !strings.Contains(extra, "\ncluster:") {
		if extra != "" && !strings.HasSuffix(extra, "\n") {
			cfg += "\n"
		}
		cfg += e2eCluster
	}
	if err := os.WriteFile(m.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// start runs `ferry mount` on m's config, waits until the kernel lists the
// mount, and stops it with SIGTERM when the test ends.
func (m *testMount) start(t *testing.T) {
	t.Helper()
	m.output, m.done, m.err = &syncBuffer{}, make(chan struct{}), nil
	m.cmd = exec.Command(ferryBin, "mount", "-config", m.Config)
	m.cmd.Stdout, m.cmd.Stderr = m.output, m.output
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start ferry mount: %v", err)
	}
	cmd, done := m.cmd, m.done
	go func() {
		m.err = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() { m.stop(t) })

	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(t, m.Dir) {
		select {
		case <-done:
			t.Fatalf("ferry mount exited before mounting %s: %v\noutput:\n%s", m.Dir, m.err, m.output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry mount did not mount %s within 20s\noutput:\n%s", m.Dir, m.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts ferry mount again on the same mount point, data directory
// and config. A process still running is stopped with SIGTERM first; the
// dead mount of a killed one is detached.
func (m *testMount) restart(t *testing.T) {
	t.Helper()
	m.stop(t)
	if isMounted(t, m.Dir) {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
	m.start(t)
}

// stop sends SIGTERM and waits for the process to unmount and exit. A
// process that hangs is killed and its mount detached, so that one broken
// test does not leave a dead mount behind for the rest of the run.
func (m *testMount) stop(t *testing.T) {
	t.Helper()
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		if m.err != nil {
			t.Errorf("ferry mount exited with %v after SIGTERM\noutput:\n%s", m.err, m.output)
		}
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		t.Errorf("ferry mount did not exit within 15s of SIGTERM\noutput:\n%s", m.output)
		return
	}
	if isMounted(t, m.Dir) {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		t.Errorf("%s still mounted after ferry mount exited", m.Dir)
	}
}

// Path is the path of name (slash-separated) inside the mount.
func (m *testMount) Path(name string) string {
	return filepath.Join(m.Dir, filepath.FromSlash(name))
}

// TreePath is the backing file of name under the data directory.
func (m *testMount) TreePath(name string) string {
	return filepath.Join(m.DataDir, "tree", filepath.FromSlash(name))
}

// LTXDir is the local LTX log of database name.
func (m *testMount) LTXDir(name string) string {
	return filepath.Join(m.DataDir, "meta", filepath.FromSlash(name), "ltx")
}

// isMounted reports whether dir is a mount point of this process's mount
// namespace, from /proc/self/mountinfo.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read mountinfo: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, with spaces and other special bytes
		// escaped as octal.
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true
		}
	}
	return false
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
