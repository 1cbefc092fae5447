// Package router is the HTTP shim that sits in front of an application on
// every node. Reads are served by the local node. A request that writes a
// database whose lease another node holds is answered with a `fly-replay`
// header, so Fly's proxy replays it on the holder. After a write, the
// response carries the position it produced in a cookie; a later read on a
// replica waits until the replica has caught up to that position, so a
// client always reads its own writes.
package router

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// CookieName is the cookie that carries the last position a client wrote,
// as "<escaped database name>:<txid in hex>".
const CookieName = "__ferry_txid"

// Positions reports a database's local position.
type Positions interface {
	LocalPos(name string) (ferry.Pos, error)
}

// Config configures a Router.
type Config struct {
	// Target is the application's own address, such as "http://localhost:8081".
	Target *url.URL

	// NodeID is this node's ID as lease holders are named. On Fly.io it is
	// the machine ID, which is also what `fly-replay: instance=` expects.
	NodeID string

	// Database names the database a request touches; ok is false when the
	// request touches none, and it is then served locally.
	Database func(r *http.Request) (name string, ok bool)

	// Leases tells who holds each database's lease.
	Leases ferry.LeaseView

	// Positions reports local positions, for read-your-writes.
	Positions Positions

	// MaxLag bounds how long a read waits for this node to catch up to the
	// position in the client's cookie before it is served anyway.
	MaxLag time.Duration

	// Logger receives routing decisions at debug level.
	Logger *slog.Logger
}

// Router is an http.Handler that routes requests as the package describes.
type Router struct {
	cfg   Config
	proxy *httputil.ReverseProxy
}

// New returns a Router that forwards to cfg.Target.
func New(cfg Config) (*Router, error) {
	if cfg.Target == nil {
		return nil, fmt.Errorf("router: no target")
	}
	if cfg.Database == nil || cfg.Leases == nil || cfg.Positions == nil {
		return nil, fmt.Errorf("router: Database, Leases and Positions are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 5 * time.Second
	}
	rt := &Router{cfg: cfg}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Target)
			pr.SetXForwarded()
		},
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
	name, ok := rt.cfg.Database(r)
	if !ok {
		rt.proxy.ServeHTTP(w, r)
		return
	}
	if IsWrite(r) {
		rt.serveWrite(w, r, name)
		return
	}
	rt.waitForCookie(r, name)
	rt.proxy.ServeHTTP(w, r)
}

func (rt *Router) serveWrite(w http.ResponseWriter, r *http.Request, name string) {
	// With no holder yet, the write is served here: the first node to write
	// a database is given its lease.
	if holder, _, ok := rt.cfg.Leases.Holder(name); ok && holder != rt.cfg.NodeID {
		rt.cfg.Logger.Debug("replaying write on lease holder", "db", name, "holder", holder)
		w.Header().Set("fly-replay", "instance="+holder)
		w.WriteHeader(http.StatusConflict)
		return
	}
	rec := &positionWriter{ResponseWriter: w, rt: rt, name: name}
	rt.proxy.ServeHTTP(rec, r)
}

// waitForCookie holds a read until this node has applied the position the
// client last wrote, or MaxLag passes.
func (rt *Router) waitForCookie(r *http.Request, name string) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return
	}
	want, ok := parseCookie(c.Value, name)
	if !ok {
		return // a malformed or foreign cookie only loses read-your-writes
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.cfg.MaxLag)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if pos, err := rt.cfg.Positions.LocalPos(name); err == nil && pos.TXID >= want {
			return
		}
		select {
		case <-ctx.Done():
			rt.cfg.Logger.Debug("read served before catching up", "db", name, "want", want)
			return
		case <-tick.C:
		}
	}
}

// positionWriter sets the position cookie on a write's response just before
// the headers go out, when the application's transaction has committed.
type positionWriter struct {
	http.ResponseWriter
	rt          *Router
	name        string
	wroteHeader bool
}

func (pw *positionWriter) WriteHeader(code int) {
	if !pw.wroteHeader {
		pw.wroteHeader = true
		if pos, err := pw.rt.cfg.Positions.LocalPos(pw.name); err == nil && !pos.IsZero() {
			http.SetCookie(pw.ResponseWriter, &http.Cookie{
				Name:     CookieName,
				Value:    formatCookie(pw.name, pos.TXID),
				Path:     "/",
				MaxAge:   5,
				HttpOnly: true,
			})
		}
	}
	pw.ResponseWriter.WriteHeader(code)
}

func (pw *positionWriter) Write(b []byte) (int, error) {
	if !pw.wroteHeader {
		pw.WriteHeader(http.StatusOK)
	}
	return pw.ResponseWriter.Write(b)
}

// Flush lets streaming responses through.
func (pw *positionWriter) Flush() {
	if f, ok := pw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func formatCookie(name string, txid ltx.TXID) string {
	return url.QueryEscape(name) + ":" + strconv.FormatUint(uint64(txid), 16)
}

// parseCookie returns the TXID in a cookie value if it is for database name.
func parseCookie(v, name string) (ltx.TXID, bool) {
	esc, hex, ok := strings.Cut(strings.TrimSpace(v), ":")
	if !ok {
		return 0, false
	}
	if got, err := url.QueryUnescape(esc); err != nil || got != name {
		return 0, false
	}
	txid, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, false
	}
	return ltx.TXID(txid), true
}

// StaticDatabase routes every request to one database, like a LiteFS proxy
// with `proxy.db` set.
func StaticDatabase(name string) func(*http.Request) (string, bool) {
	return func(*http.Request) (string, bool) { return name, true }
}

// HeaderDatabase takes the database name from a request header, for apps
// that put one tenant per database; requests without the header, or with a
// name that fails ferry.ValidateName, touch no database.
func HeaderDatabase(header string) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		name := r.Header.Get(header)
		if name == "" || ferry.ValidateName(name) != nil {
			return "", false
		}
		return name, true
	}
}
