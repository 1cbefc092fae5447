package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ferrydb/ferry/metrics"
)

// MetricsConfig is the config's metrics section: Prometheus metrics and
// the lag-aware health check, on their own listener.
//
//	metrics:
//	  addr: ":9091"
//	  max-lag: 10s
type MetricsConfig struct {
	// Addr is where GET /metrics and GET /health are served, such as
	// ":9091". Empty: not served.
	Addr string `yaml:"addr"`

	// MaxLag is how long a database may trail the bucket before /health
	// answers 503. Default 10s.
	MaxLag time.Duration `yaml:"max-lag"`
}

// maxLag returns MaxLag or its default.
func (c MetricsConfig) maxLag() time.Duration {
	if c.MaxLag > 0 {
		return c.MaxLag
	}
	return 10 * time.Second
}

func (c MetricsConfig) validate() error {
	if c.MaxLag < 0 {
		return fmt.Errorf("metrics.max-lag: %s is negative", c.MaxLag)
	}
	return nil
}

// serve starts the metrics listener when it is configured, and samples
// the lag every second so that it is current between scrapes.
func (c MetricsConfig) serve(ctx context.Context, m *metrics.Metrics, logger *slog.Logger) (stop func() error, err error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				m.Sample()
			}
		}
	}()
	if c.Addr == "" {
		return func() error { cancel(); <-sampled; return nil }, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /health", m.HealthHandler(c.maxLag()))
	srv, err := startHTTPServer(c.Addr, mux, logger, "metrics endpoint")
	if err != nil {
		cancel()
		<-sampled
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return func() error {
		cancel()
		<-sampled
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		return srv.Shutdown(sctx)
	}, nil
}
