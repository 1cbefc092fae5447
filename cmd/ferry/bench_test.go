package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchTable runs 'ferry bench' briefly against two plain directories
// and checks the shape of its table. It asserts nothing about speed.
func TestBenchTable(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "-duration", "100ms", "-rows", "500", "-baseline", base, dir}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+2*3+1 {
		t.Fatalf("bench printed %d lines; want a header, three rows per mode and a note:\n%s", len(lines), out)
	}
	for _, want := range []string{"writes/s", "commit p50", "commit p99", "reads/s"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %q", lines[0], want)
		}
	}
	for i, mode := range []string{"WAL synchronous=NORMAL", "DELETE synchronous=FULL"} {
		for j, place := range []string{"mount", "plain", "mount/plain"} {
			line := lines[1+3*i+j]
			f := strings.Fields(line)
			if !strings.HasPrefix(strings.TrimSpace(line), mode) || f[2] != place || len(f) != 7 {
				t.Errorf("row %d is %q; want %s in %s with four figures", 1+3*i+j, line, mode, place)
			}
		}
	}
	assertNoBenchFiles(t, dir, base)
}

// TestBenchJSON checks that -json prints every result and ratio.
func TestBenchJSON(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "-json", "-duration", "50ms", "-reads", "1000", "-writes", "200", "-rows", "100", "-baseline", base, dir}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var report benchReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("bench -json printed invalid JSON: %v\n%s", err, stdout.String())
	}
	if len(report.Results) != 4 || len(report.Ratios) != 2 {
		t.Fatalf("got %d results and %d ratios; want 4 and 2", len(report.Results), len(report.Ratios))
	}
	for i, res := range report.Results {
		wantPlace := []string{"mount", "plain"}[i%2]
		wantDir := []string{dir, base}[i%2]
		if res.Place != wantPlace || res.Dir != wantDir {
			t.Errorf("result %d is %s in %s; want %s in %s", i, res.Place, res.Dir, wantPlace, wantDir)
		}
		if res.Writes < 1 || res.Writes > 200 || res.Reads < 1 || res.Reads > 1000 {
			t.Errorf("result %d: %d writes and %d reads; want 1-200 and 1-1000 (the -writes and -reads bounds)", i, res.Writes, res.Reads)
		}
		if res.WritesPerSec <= 0 || res.ReadsPerSec <= 0 || res.P50Micros <= 0 || res.P99Micros < res.P50Micros {
			t.Errorf("result %d has implausible figures: %+v", i, res)
		}
	}
	for i, r := range report.Ratios {
		if r.Writes <= 0 || r.Reads <= 0 || r.P50 <= 0 || r.P99 <= 0 {
			t.Errorf("ratio %d has a zero figure: %+v", i, r)
		}
	}
	assertNoBenchFiles(t, dir, base)
}

// TestBenchBadInput checks that bad flags and directories give clear errors.
func TestBenchBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "exactly one directory"},
		{[]string{dir, dir}, "exactly one directory"},
		{[]string{"-duration", "0s", dir}, "-duration must be positive"},
		{[]string{"-reads", "0", dir}, "-reads must be at least 1"},
		{[]string{"-writes", "-3", dir}, "-writes must be at least 1"},
		{[]string{"-rows", "0", dir}, "-rows must be at least 1"},
		{[]string{"-duration", "soon", dir}, "invalid value"},
		{[]string{filepath.Join(dir, "missing")}, "no such file or directory"},
		{[]string{file}, "is not a directory"},
		{[]string{"-baseline", file, dir}, "is not a directory"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"bench"}, tc.args...), &stdout, &stderr)
		if err == nil {
			t.Errorf("bench %q succeeded; want an error", tc.args)
			continue
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.want) {
			t.Errorf("bench %q: %v; want it to mention %q", tc.args, msg, tc.want)
		}
	}
}

// assertNoBenchFiles checks that bench removed its databases.
func assertNoBenchFiles(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("bench left %s behind in %s", e.Name(), d)
		}
	}
}
