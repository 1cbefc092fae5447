package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestPprofEnv checks that FERRY_PPROF serves profiles on loopback and
// refuses any other address with a clear error.
func TestPprofEnv(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct{ addr, want string }{
		{"0.0.0.0:6060", "want a loopback address"},
		{"10.1.2.3:6060", "want a loopback address"},
		{"6060", "missing port"},
	} {
		t.Setenv(pprofEnv, tc.addr)
		err := startPprof(context.Background(), logger)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v; want an error mentioning %q", pprofEnv, tc.addr, err, tc.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv(pprofEnv, "127.0.0.51:27402")
	if err := startPprof(ctx, logger); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://127.0.0.51:27402/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("goroutine profile: %s\n%s", resp.Status, body)
	}
}
