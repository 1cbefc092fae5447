// Package scripts holds tests of the repository's shell scripts.
package scripts

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCIRunSetsCI runs .ci/run, with scripts/test.sh beside it, in a copy
// of the repository whose only setup script records CI and stops the
// run. FUSE and tool tests skip when CI is not "true", so CI must be set
// even when the runner does not set it, and an explicit value is kept.
func TestCIRunSetsCI(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"unset", nil, "true"},
		{"explicit", []string{"CI=false"}, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			copyFile(t, "../.ci/run", filepath.Join(repo, ".ci/run"))
			copyFile(t, "test.sh", filepath.Join(repo, "scripts/test.sh"))
			out := filepath.Join(t.TempDir(), "ci")
			probe := "#!/usr/bin/env bash\nprintf '%s' \"${CI-unset}\" >\"$CI_PROBE_OUT\"\nexit 3\n"
			writeFile(t, filepath.Join(repo, "scripts/setup.d/00-probe.sh"), probe)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(repo, ".ci/run"))
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "CI=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "CI_PROBE_OUT="+out)
			cmd.Env = append(cmd.Env, tc.env...)
			output, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 {
				t.Fatalf(".ci/run: %v, want the probe's exit status 3\n%s", err, output)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("the setup script did not run: %v\n%s", err, output)
			}
			if string(got) != tc.want {
				t.Fatalf("CI = %q in the test run, want %q", got, tc.want)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o755); err != nil {
		t.Fatal(err)
	}
}
