// Package router is the HTTP shim that sits in front of an application on
// every node. It maps each request to the database it touches (by path,
// host or header; see Resolver). Reads are served by the local node. A
// write to a database whose lease another node holds is sent to the
// holder: with a `fly-replay` header on Fly.io, so Fly's proxy replays it
// there, or forwarded to the holder's router elsewhere. After a write, the
// response carries the TXID it produced per database, in a cookie and a
// header; a later read on a replica waits until the replica has caught up
// to it, or is sent to the holder, so a client always reads its own
// writes.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/ferrydb/ferry"
)

// Positions reports a database's local position.
type Positions interface {
	LocalPos(name string) (ferry.Pos, error)
}

// Mode says how a request reaches the lease holder.
type Mode string

const (
	// ModeReplay answers with `fly-replay: instance=<holder>`, for Fly's
	// proxy to replay the request there. A request Fly cannot replay (one
	// that did not come through Fly's proxy, a body over MaxReplayBody, or
	// one already replayed) is forwarded.
	ModeReplay Mode = "replay"
	// ModeForward forwards the request to the holder's router.
	ModeForward Mode = "forward"
)

// ReadBehind says what a read does when this node has not caught up to
// the client's own last write within MaxLag.
type ReadBehind string

const (
	// ReadBehindForward sends the read to the lease holder (the default).
	ReadBehindForward ReadBehind = "forward"
	// ReadBehindServe serves it locally anyway, possibly stale.
	ReadBehindServe ReadBehind = "serve"
)

// Decision is what the router did with a request, for metrics.
type Decision string

// The router's decisions.
const (
	DecisionLocal       Decision = "local"       // served by this node's app
	DecisionReplayed    Decision = "replayed"    // answered with fly-replay
	DecisionForwarded   Decision = "forwarded"   // proxied to the holder's router
	DecisionWaited      Decision = "waited"      // waited for a holder or to catch up first
	DecisionRejected    Decision = "rejected"    // invalid tenant: 400
	DecisionUnavailable Decision = "unavailable" // no holder within the bound, a loop, or no route to it: 503
)

// ForwardedHeader marks a request one router forwarded to another. A
// router that is not the holder does not forward such a request again, so
// two nodes that disagree about the holder cannot bounce it between them.
const ForwardedHeader = "Ferry-Forwarded-By"

// FlyReplaySrcHeader is set by Fly's proxy on a replayed request.
const FlyReplaySrcHeader = "Fly-Replay-Src"

// FlyForwardedPortHeader is set by Fly's proxy on every request it
// delivers; only such a request can be replayed.
const FlyForwardedPortHeader = "Fly-Forwarded-Port"

// DefaultMaxReplayBody is the largest request body Fly's proxy replays.
const DefaultMaxReplayBody = 1 << 20

// Config configures a Router.
type Config struct {
	// Target is the application's own address, such as "http://localhost:8081".
	Target *url.URL

	// NodeID is this node's ID as lease holders are named. On Fly.io it is
	// the machine ID, which is also what `fly-replay: instance=` expects.
	NodeID string

	// Database names the database a request touches; ok is false when it
	// touches none, and it is then served locally. An error (an invalid
	// tenant) is answered with 400. Resolver.Resolve is one.
	Database func(r *http.Request) (name string, ok bool, err error)

	// IsWrite reports whether a request writes. Default: IsWrite.
	IsWrite func(r *http.Request) bool

	// Leases tells who holds each database's lease.
	Leases ferry.LeaseView

	// Acquire, when set, takes a database's lease for this node; it is
	// called for a write to a database nobody holds. Without it such a
	// write is served locally and the write itself takes the lease.
	Acquire func(ctx context.Context, name string) error

	// Positions reports local positions, for read-your-writes.
	Positions Positions

	// Mode says how requests reach the holder. Default ModeForward.
	Mode Mode

	// Peer returns the base URL of node's router, for forwarding.
	Peer func(node string) (*url.URL, bool)

	// PeerTransport carries every request this router forwards to another
	// node's router. Default http.DefaultTransport.
	PeerTransport http.RoundTripper

	// SignForward, when set, adds this node's credentials to every request
	// it forwards to another node's router, and VerifyForwarded checks
	// them on every request that arrives marked as forwarded
	// (ForwardedHeader): one that fails gets 401 and never reaches the
	// application. CredentialHeaders are removed from every request
	// before the application sees it, so that it never learns them.
	SignForward       func(http.Header)
	VerifyForwarded   func(http.Header) error
	CredentialHeaders []string

	// MaxLag bounds how long a read waits for this node to catch up to the
	// client's own last write. Default 5s.
	MaxLag time.Duration

	// ReadBehind says what a read still behind after MaxLag does.
	// Default ReadBehindForward.
	ReadBehind ReadBehind

	// HolderWait bounds how long a write waits for some node to hold its
	// database's lease before it is answered 503. Default 5s.
	HolderWait time.Duration

	// MaxReplayBody is the largest body sent with fly-replay; larger
	// requests are forwarded. Default DefaultMaxReplayBody.
	MaxReplayBody int64

	// Observe, when set, is told every decision, for metrics.
	Observe func(Decision)

	// Logger receives routing decisions at debug level.
	Logger *slog.Logger
}

// Router is an http.Handler that routes requests as the package describes.
type Router struct {
	cfg   Config
	local *httputil.ReverseProxy
}

// New returns a Router that serves local requests from cfg.Target.
func New(cfg Config) (*Router, error) {
	if cfg.Target == nil {
		return nil, errors.New("router: no target")
	}
	if cfg.Database == nil || cfg.Leases == nil || cfg.Positions == nil {
		return nil, errors.New("router: Database, Leases and Positions are required")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeForward
	case ModeReplay, ModeForward:
	default:
		return nil, fmt.Errorf("router: unknown mode %q", cfg.Mode)
	}
	switch cfg.ReadBehind {
	case "":
		cfg.ReadBehind = ReadBehindForward
	case ReadBehindForward, ReadBehindServe:
	default:
		return nil, fmt.Errorf("router: unknown read-behind policy %q", cfg.ReadBehind)
	}
	if cfg.IsWrite == nil {
		cfg.IsWrite = IsWrite
	}
	if cfg.Peer == nil {
		cfg.Peer = func(string) (*url.URL, bool) { return nil, false }
	}
	if cfg.PeerTransport == nil {
		cfg.PeerTransport = http.DefaultTransport
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 5 * time.Second
	}
	if cfg.HolderWait == 0 {
		cfg.HolderWait = 5 * time.Second
	}
	if cfg.MaxReplayBody == 0 {
		cfg.MaxReplayBody = DefaultMaxReplayBody
	}
	rt := &Router{cfg: cfg}
	rt.local = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Target)
			pr.Out.Host = pr.In.Host // host routes must see the client's host
			pr.SetXForwarded()
		},
		FlushInterval: -1, // stream responses as the app writes them
	}
	return rt, nil
}

// IsWrite reports whether a request may write: every method but GET, HEAD
// and OPTIONS, as Fly's own LiteFS proxy decides it.
func IsWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(ForwardedHeader) != "" && rt.cfg.VerifyForwarded != nil {
		// Only another node may say it forwarded a request: the header
		// changes how the request is routed.
		if err := rt.cfg.VerifyForwarded(r.Header); err != nil {
			rt.observe(DecisionRejected)
			http.Error(w, "forwarded request without the cluster's credentials", http.StatusUnauthorized)
			return
		}
	}
	for _, h := range rt.cfg.CredentialHeaders {
		r.Header.Del(h)
	}
	name, ok, err := rt.cfg.Database(r)
	if err != nil {
		rt.observe(DecisionRejected)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !ok {
		rt.serveLocal(w, r)
		return
	}
	if rt.cfg.IsWrite(r) {
		rt.serveWrite(w, r, name)
		return
	}
	rt.serveRead(w, r, name)
}

func (rt *Router) observe(d Decision) {
	if rt.cfg.Observe != nil {
		rt.cfg.Observe(d)
	}
}

func (rt *Router) serveLocal(w http.ResponseWriter, r *http.Request) {
	rt.observe(DecisionLocal)
	rt.local.ServeHTTP(w, r)
}

// unavailable answers 503 with Retry-After, so clients and Fly's proxy
// try again once a lease has settled.
func (rt *Router) unavailable(w http.ResponseWriter, msg string) {
	rt.observe(DecisionUnavailable)
	w.Header().Set("Retry-After", "1")
	http.Error(w, msg, http.StatusServiceUnavailable)
}
