package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestE2EBench runs 'ferry bench' briefly inside a real mount. Like the
// in-process bench tests it checks only that the command works and reports
// every figure, never how fast anything is.
func TestE2EBench(t *testing.T) {
	m := startMount(t)
	if err := os.Mkdir(m.Path("bench"), 0o755); err != nil {
		t.Fatalf("mkdir in mount: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, "bench", "-json", "-duration", "200ms", "-rows", "1000",
		"-baseline", t.TempDir(), m.Path("bench"))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if exit, ok := err.(*exec.ExitError); ok {
			stderr = exit.Stderr
		}
		t.Fatalf("ferry bench in the mount: %v\n%s", err, stderr)
	}
	var report benchReport
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("ferry bench -json: %v\n%s", err, out)
	}
	if len(report.Results) != 4 {
		t.Fatalf("got %d results; want 4", len(report.Results))
	}
	for _, res := range report.Results {
		if res.Writes < 1 || res.Reads < 1 {
			t.Errorf("%s %s: %d writes, %d reads", res.Place, res.Journal, res.Writes, res.Reads)
		}
	}
	ents, err := os.ReadDir(m.Path("bench"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("bench left %s in the mount", e.Name())
	}
}
