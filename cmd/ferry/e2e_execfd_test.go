package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EAppDoesNotInheritFUSEDevice starts an app that lists its open
// descriptors. It must not hold the mount's /dev/fuse: an app that
// outlives a killed Ferry would keep the connection alive and hang on its
// own requests to the mount.
func TestE2EAppDoesNotInheritFUSEDevice(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fds")
	m := startMountWith(t, fmt.Sprintf("exec: [\"/bin/sh\", \"-c\", \"ls -l /proc/$$/fd > %s.tmp; mv %s.tmp %s; trap 'kill $!; exit 0' TERM; sleep 60 & wait\"]\n", out, out, out))
	var fds []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if fds, err = os.ReadFile(out); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(fds) == 0 {
		t.Fatalf("the app never listed its descriptors\n%s", m.output)
	}
	if strings.Contains(string(fds), "/dev/fuse") {
		t.Fatalf("the app inherited /dev/fuse:\n%s", fds)
	}
}
