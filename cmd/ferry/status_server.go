package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/ferrydb/ferry/status"
)

// The status endpoint's types, as the commands that serve and read it
// name them.
type (
	statusSources  = status.Sources
	statusReport   = status.Report
	dbStatus       = status.Database
	handoffRequest = status.HandoffRequest
	statusError    = status.ErrorBody
)

// serveStatus serves h on the status address lease.status configures.
func serveStatus(ctx context.Context, cfg LeaseConfig, dataDir string, h http.Handler, logger *slog.Logger) (stop func() error, err error) {
	network, addr, err := cfg.statusListen(dataDir)
	if err != nil {
		return nil, err
	}
	return status.Serve(ctx, network, addr, h, logger)
}
