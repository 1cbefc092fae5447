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
)

// HTTPConfig is the config's http section: the node-to-node HTTP server,
// with LiteFS's key names. The lease holder of a database streams its
// change sets from it to the other nodes.
//
//	http:
//	  addr: ":20203"
//	  advertise-url: "http://${FLY_MACHINE_ID}.vm.myapp.internal:20203"
type HTTPConfig struct {
	// Addr is where the server listens. Empty: no server; this node then
	// neither streams to others nor is found by them, and readers follow
	// its databases through the bucket.
	Addr string `yaml:"addr"`

	// AdvertiseURL is the URL other nodes reach this server at. It is
	// published with the node's lease membership. Default: http:// and
	// Addr, which only works where Addr names a reachable host.
	AdvertiseURL string `yaml:"advertise-url"`
}

func (c HTTPConfig) validate() error {
	if c.Addr == "" {
		if c.AdvertiseURL != "" {
			return errors.New("http.advertise-url needs http.addr")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("http.addr %q: %w", c.Addr, err)
	}
	if c.AdvertiseURL != "" {
		u, err := url.Parse(c.AdvertiseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http.advertise-url %q: want http://host:port", c.AdvertiseURL)
		}
	}
	return nil
}

// advertiseURL is the URL this node publishes, or "" without a server.
func (c HTTPConfig) advertiseURL() string {
	if c.Addr == "" {
		return ""
	}
	if c.AdvertiseURL != "" {
		return c.AdvertiseURL
	}
	return "http://" + c.Addr
}

// serve starts the node-to-node server with handler. stop shuts it down.
func (c HTTPConfig) serve(handler http.Handler, logger *slog.Logger) (stop func() error, err error) {
	if c.Addr == "" {
		return func() error { return nil }, nil
	}
	srv, err := startHTTPServer(c.Addr, handler, logger, "node HTTP server")
	if err != nil {
		return nil, fmt.Errorf("http.addr: %w", err)
	}
	return func() error {
		// Streams are long-lived: close them rather than wait for them.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return srv.Close()
		}
		return nil
	}, nil
}

// startHTTPServer serves h on TCP address addr in the background, logging
// as what if the server stops on an error. The caller shuts it down.
func startHTTPServer(addr string, h http.Handler, logger *slog.Logger, what string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(what+" stopped", "err", err)
		}
	}()
	return srv, nil
}
