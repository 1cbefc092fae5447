package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/router"
)

// ProxyConfig is the config's proxy section: the HTTP shim in front of the
// application, as LiteFS's proxy section. It serves reads on this node and
// sends writes to the database's lease holder with `fly-replay`.
//
//	proxy:
//	  addr: ":8080"
//	  target: "localhost:8081"
//	  db-header: "X-Tenant-DB"
type ProxyConfig struct {
	// Addr is where the proxy listens, such as ":8080" (the port fly.toml
	// exposes). Empty: no proxy.
	Addr string `yaml:"addr"`

	// Target is the application's own address, such as "localhost:8081".
	Target string `yaml:"target"`

	// DB names the one database every request touches, for a
	// single-database app. Use DBHeader instead for one database per
	// tenant.
	DB string `yaml:"db"`

	// DBHeader names the request header that carries the database name,
	// for one database per tenant. Requests without it are served locally.
	DBHeader string `yaml:"db-header"`

	// MaxLag bounds how long a read waits for this node to catch up to the
	// client's own last write. Default 5s.
	MaxLag time.Duration `yaml:"max-lag"`
}

func (c ProxyConfig) validate() error {
	if c.Addr == "" {
		return nil
	}
	switch {
	case c.Target == "":
		return errors.New("proxy.target is required with proxy.addr")
	case c.DB == "" && c.DBHeader == "":
		return errors.New("proxy needs db or db-header")
	case c.DB != "" && c.DBHeader != "":
		return errors.New("proxy: set db or db-header, not both")
	case c.DB != "":
		if err := ferry.ValidateName(c.DB); err != nil {
			return fmt.Errorf("proxy.db: %w", err)
		}
	}
	return nil
}

// serve starts the proxy when it is configured; stop shuts it down.
func (c ProxyConfig) serve(ctx context.Context, node string, leases ferry.LeaseView, positions router.Positions, logger *slog.Logger) (stop func() error, err error) {
	if c.Addr == "" {
		return func() error { return nil }, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	target, err := url.Parse("http://" + c.Target)
	if err != nil {
		return nil, fmt.Errorf("proxy.target: %w", err)
	}
	resolve := router.HeaderDatabase(c.DBHeader)
	if c.DB != "" {
		resolve = router.StaticDatabase(c.DB)
	}
	rt, err := router.New(router.Config{
		Target: target, NodeID: node, Database: resolve,
		Leases: leases, Positions: positions, MaxLag: c.MaxLag,
		Logger: logger.With("component", "proxy"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("proxy stopped", "err", err)
		}
	}()
	return func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}, nil
}
