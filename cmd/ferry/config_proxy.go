package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/peerauth"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/router"
)

// ProxyConfig is the config's proxy section: the HTTP shim in front of the
// application, as LiteFS's proxy section. It serves reads on this node and
// sends writes to the database's lease holder (see package router).
//
//	proxy:
//	  addr: ":8080"
//	  target: "localhost:8081"
//	  routes:
//	    - {path: "/customers/{tenant}", db: "customers/{tenant}.db"}
//	  db-header: "X-Tenant-DB"
type ProxyConfig struct {
	// Addr is where the proxy listens, such as ":8080" (the port fly.toml
	// exposes). Empty: no proxy.
	Addr string `yaml:"addr"`

	// Target is the application's own address, such as "localhost:8081".
	Target string `yaml:"target"`

	// Routes map requests to databases by path or host pattern; they are
	// tried in order, before DBHeader and DB.
	Routes []ProxyRoute `yaml:"routes"`

	// DB names the one database every request no route matches touches,
	// for a single-database app.
	DB string `yaml:"db"`

	// DBHeader names the request header that carries the database name.
	DBHeader string `yaml:"db-header"`

	// Mode is how a request reaches the lease holder: "replay" answers
	// with fly-replay, "forward" proxies it to the holder's router, and
	// "auto" (the default) replays on Fly.io (FLY_APP_NAME set) and
	// forwards elsewhere.
	Mode string `yaml:"mode"`

	// Peers maps node IDs to their proxies' addresses ("host:port"), for
	// forwarding. A node not listed is reached at
	// <node>.vm.$FLY_APP_NAME.internal on Fly.io, else at the host of its
	// lease address, on this proxy's port.
	Peers map[string]string `yaml:"peers"`

	// WriteMethods are the methods that write. Default: all but GET, HEAD
	// and OPTIONS.
	WriteMethods []string `yaml:"write-methods"`

	// Reads lists requests that only read though their method writes, as
	// "METHOD /path" ("/path/" matches below it); Writes the reverse.
	Reads  []string `yaml:"reads"`
	Writes []string `yaml:"writes"`

	// MaxLag bounds how long a read waits for this node to catch up to the
	// client's own last write. Default 5s.
	MaxLag time.Duration `yaml:"max-lag"`

	// ReadBehind is what a read still behind after MaxLag does: "forward"
	// to the holder (the default) or "serve" it locally anyway.
	ReadBehind string `yaml:"read-behind"`

	// HolderWait bounds how long a write waits for a lease holder before
	// it is answered 503. Default 5s.
	HolderWait time.Duration `yaml:"holder-wait"`

	// HealthPath, when set, is a path the proxy answers itself with the
	// lag-aware health check (as metrics' /health), for load balancers
	// that check the service's own port, such as Fly's http_service
	// checks.
	HealthPath string `yaml:"health-path"`
}

// ProxyRoute is one entry of proxy.routes.
type ProxyRoute struct {
	// Path is a path pattern such as "/customers/{tenant}".
	Path string `yaml:"path"`
	// Host is a host pattern such as "{tenant}.example.com".
	Host string `yaml:"host"`
	// DB is the database, such as "customers/{tenant}.db".
	DB string `yaml:"db"`
}

func (c ProxyConfig) resolver() *router.Resolver {
	res := &router.Resolver{Header: c.DBHeader, Static: c.DB}
	for _, r := range c.Routes {
		res.Routes = append(res.Routes, router.Route{Path: r.Path, Host: r.Host, DB: r.DB})
	}
	return res
}

func (c ProxyConfig) writePolicy() router.WritePolicy {
	return router.WritePolicy{Methods: c.WriteMethods, Reads: c.Reads, Writes: c.Writes}
}

// mode resolves "auto".
func (c ProxyConfig) mode() router.Mode {
	switch c.Mode {
	case "", "auto":
		if os.Getenv("FLY_APP_NAME") != "" {
			return router.ModeReplay
		}
		return router.ModeForward
	}
	return router.Mode(c.Mode)
}

func (c ProxyConfig) validate() error {
	if c.Addr == "" {
		return nil
	}
	switch {
	case c.Target == "":
		return errors.New("proxy.target is required with proxy.addr")
	case c.DB == "" && c.DBHeader == "" && len(c.Routes) == 0:
		return errors.New("proxy needs routes, db or db-header")
	case c.DB != "" && c.DBHeader != "":
		return errors.New("proxy: set db or db-header, not both")
	case c.DB != "":
		if err := ferry.ValidateName(c.DB); err != nil {
			return fmt.Errorf("proxy.db: %w", err)
		}
	}
	if err := c.resolver().Validate(); err != nil {
		return fmt.Errorf("proxy.routes: %w", err)
	}
	if _, err := c.writePolicy().Compile(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	switch c.Mode {
	case "", "auto", "replay", "forward":
	default:
		return fmt.Errorf("proxy.mode: %q is not auto, replay or forward", c.Mode)
	}
	switch c.ReadBehind {
	case "", "forward", "serve":
	default:
		return fmt.Errorf("proxy.read-behind: %q is not forward or serve", c.ReadBehind)
	}
	if c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/") {
		return fmt.Errorf("proxy.health-path: %q must start with /", c.HealthPath)
	}
	for node, addr := range c.Peers {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("proxy.peers.%s: %w", node, err)
		}
	}
	return nil
}

// peerFunc returns where node's proxy listens, as the Peers field says.
func (c ProxyConfig) peerFunc(mgr lease.Manager) func(node string) (*url.URL, bool) {
	_, port, _ := net.SplitHostPort(c.Addr)
	return func(node string) (*url.URL, bool) {
		if addr, ok := c.Peers[node]; ok {
			return &url.URL{Scheme: "http", Host: addr}, true
		}
		if port == "" {
			return nil, false
		}
		if app := os.Getenv("FLY_APP_NAME"); app != "" {
			return &url.URL{Scheme: "http", Host: net.JoinHostPort(node+".vm."+app+".internal", port)}, true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := mgr.Status(ctx)
		if err != nil {
			return nil, false
		}
		for _, m := range st.Members {
			if m.ID != node {
				continue
			}
			host, _, err := net.SplitHostPort(m.Address)
			if err != nil || host == "" {
				return nil, false
			}
			return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, true
		}
		return nil, false
	}
}

// proxyDeps is what the proxy needs from the rest of the node.
type proxyDeps struct {
	node      string
	leases    lease.Manager
	positions router.Positions
	// peerTransport carries requests forwarded to other nodes' proxies.
	peerTransport http.RoundTripper
	// auth, when set, signs forwarded requests and checks those that
	// arrive.
	auth    *peerauth.Auth
	observe func(router.Decision)
	// health answers proxy.health-path.
	health http.Handler
	logger *slog.Logger
}

// serve starts the proxy when it is configured; stop shuts it down.
func (c ProxyConfig) serve(ctx context.Context, deps proxyDeps) (stop func() error, err error) {
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
	isWrite, err := c.writePolicy().Compile()
	if err != nil {
		return nil, err
	}
	mgr := deps.leases
	var sign func(http.Header)
	var verify func(http.Header) error
	if deps.auth != nil {
		sign, verify = deps.auth.SetForwardHeaders, deps.auth.CheckForwardHeaders
	}
	rt, err := router.New(router.Config{
		Target:   target,
		NodeID:   deps.node,
		Database: c.resolver().Resolve,
		IsWrite:  isWrite,
		Leases:   mgr,
		Acquire: func(ctx context.Context, name string) error {
			_, err := mgr.Acquire(ctx, name)
			return err
		},
		Positions:     deps.positions,
		Mode:          c.mode(),
		Peer:          c.peerFunc(mgr),
		PeerTransport: deps.peerTransport,
		// The client's own headers are never touched, nor left in place
		// for the application to see: the credentials travel in headers
		// of their own (peerauth.HeaderSecret).
		CredentialHeaders: []string{peerauth.HeaderClusterID, peerauth.HeaderSecret},
		SignForward:       sign,
		VerifyForwarded:   verify,
		MaxLag:            c.MaxLag,
		ReadBehind:        router.ReadBehind(c.ReadBehind),
		HolderWait:        c.HolderWait,
		Observe:           deps.observe,
		Logger:            deps.logger.With("component", "proxy"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var h http.Handler = rt
	if c.HealthPath != "" && deps.health != nil {
		// Not a ServeMux: it would clean and redirect the paths that the
		// router must see as sent.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == c.HealthPath {
				deps.health.ServeHTTP(w, r)
				return
			}
			rt.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			deps.logger.Error("proxy stopped", "err", err)
		}
	}()
	return func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}, nil
}
