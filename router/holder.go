package router

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// pollInterval is how often the router looks again at a lease or a
// position it is waiting for.
const pollInterval = 5 * time.Millisecond

func (rt *Router) serveWrite(w http.ResponseWriter, r *http.Request, name string) {
	holder, ok := rt.waitHolder(r.Context(), name)
	if !ok {
		rt.unavailable(w, "no node holds the lease of "+name+"; try again")
		return
	}
	if holder == rt.cfg.NodeID {
		rt.observe(DecisionLocal)
		rt.local.ServeHTTP(&positionWriter{ResponseWriter: w, rt: rt, r: r, name: name}, r)
		return
	}
	if by := r.Header.Get(ForwardedHeader); by != "" {
		// The router that sent it here thinks this node holds the lease,
		// and this node thinks another does: the lease is moving. Sending
		// it on could bounce it between two stale views.
		rt.cfg.Logger.Debug("write forwarded to a node that does not hold the lease", "db", name, "from", by, "holder", holder)
		rt.unavailable(w, "the lease of "+name+" is moving; try again")
		return
	}
	rt.sendToHolder(w, r, name, holder)
}

func (rt *Router) serveRead(w http.ResponseWriter, r *http.Request, name string) {
	want, ok := requestWritten(r).get(name)
	holder, _, held := rt.cfg.Leases.Holder(name)
	// The holder's copy is the newest there is: it never waits.
	if !ok || held && holder == rt.cfg.NodeID || rt.waitCaughtUp(r.Context(), name, want) {
		rt.serveLocal(w, r)
		return
	}
	// The lease may have moved while the read waited.
	holder, _, held = rt.cfg.Leases.Holder(name)
	if !held && rt.cfg.ReadBehind != ReadBehindServe && r.Header.Get(ForwardedHeader) == "" {
		// The client wrote this database elsewhere, and this node has not
		// learnt yet who holds its lease: serving now would miss the
		// write, or open a database this node does not have.
		holder, held = rt.waitHolderKnown(r.Context(), name, want)
	}
	if rt.cfg.ReadBehind == ReadBehindServe || !held || holder == rt.cfg.NodeID || r.Header.Get(ForwardedHeader) != "" {
		rt.cfg.Logger.Debug("read served before catching up", "db", name, "want", want)
		rt.serveLocal(w, r)
		return
	}
	rt.sendToHolder(w, r, name, holder)
}

// sendToHolder has the holder serve the request: by fly-replay where it
// can, else by forwarding it to the holder's router.
func (rt *Router) sendToHolder(w http.ResponseWriter, r *http.Request, name, holder string) {
	if rt.cfg.Mode == ModeReplay && rt.replayable(r) {
		rt.cfg.Logger.Debug("replaying on lease holder", "db", name, "holder", holder)
		rt.observe(DecisionReplayed)
		w.Header().Set("fly-replay", "instance="+holder)
		w.WriteHeader(http.StatusConflict)
		return
	}
	peer, ok := rt.cfg.Peer(holder)
	if !ok {
		rt.unavailable(w, "no address known for "+holder+", which holds the lease of "+name)
		return
	}
	rt.cfg.Logger.Debug("forwarding to lease holder", "db", name, "holder", holder, "url", peer)
	rt.observe(DecisionForwarded)
	rt.forwarder(peer).ServeHTTP(w, r)
}

// replayable reports whether Fly's proxy can replay r: it came through
// Fly's proxy (a request over the private network did not, and would hand
// the fly-replay header to the client), its body is known to fit Fly's
// limit, and Fly has not replayed it already (a second replay could chase
// a moving lease around).
func (rt *Router) replayable(r *http.Request) bool {
	if r.Header.Get(FlyForwardedPortHeader) == "" || r.Header.Get(FlyReplaySrcHeader) != "" {
		return false
	}
	return r.ContentLength >= 0 && r.ContentLength <= rt.cfg.MaxReplayBody
}

func (rt *Router) forwarder(peer *url.URL) *httputil.ReverseProxy {
	node := rt.cfg.NodeID
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(peer)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, node)
			if rt.cfg.SignForward != nil {
				rt.cfg.SignForward(pr.Out.Header)
			}
		},
		Transport:     rt.cfg.PeerTransport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt.cfg.Logger.Warn("forward to lease holder failed", "url", peer, "err", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "lease holder unreachable", http.StatusBadGateway)
		},
	}
}

// waitHolder returns the node that holds database name's lease, waiting
// up to HolderWait for one. When nobody holds it, this node tries to take
// it; the first write to a database makes its node the holder.
func (rt *Router) waitHolder(ctx context.Context, name string) (string, bool) {
	if holder, _, ok := rt.cfg.Leases.Holder(name); ok {
		return holder, true
	}
	if rt.cfg.Acquire == nil {
		return rt.cfg.NodeID, true
	}
	rt.observe(DecisionWaited)
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.HolderWait)
	defer cancel()
	for {
		err := rt.cfg.Acquire(ctx, name)
		if holder, _, ok := rt.cfg.Leases.Holder(name); ok {
			return holder, true
		}
		if err == nil {
			return rt.cfg.NodeID, true
		}
		rt.cfg.Logger.Debug("waiting for a lease holder", "db", name, "err", err)
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitCaughtUp waits up to MaxLag until this node has applied TXID want of
// database name, and reports whether it has.
// waitHolderKnown waits up to MaxLag until this node knows who holds
// database name's lease, or its own copy reaches want; it returns the
// holder, or false when it caught up or learnt nothing.
func (rt *Router) waitHolderKnown(ctx context.Context, name string, want ltx.TXID) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MaxLag)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if holder, _, ok := rt.cfg.Leases.Holder(name); ok {
			return holder, true
		}
		if pos, err := rt.cfg.Positions.LocalPos(name); err == nil && pos.TXID >= want {
			return "", false
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-tick.C:
		}
	}
}

func (rt *Router) waitCaughtUp(ctx context.Context, name string, want ltx.TXID) bool {
	pos, err := rt.cfg.Positions.LocalPos(name)
	if err == nil && pos.TXID >= want {
		return true
	}
	if err != nil || pos.IsZero() {
		// The database is not on this node: nothing here will catch up
		// until the app opens it, so waiting would only add MaxLag.
		return false
	}
	caught := func() bool {
		pos, err := rt.cfg.Positions.LocalPos(name)
		return err == nil && pos.TXID >= want
	}
	rt.observe(DecisionWaited)
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MaxLag)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return caught()
		case <-tick.C:
			if caught() {
				return true
			}
		}
	}
}

// positionWriter adds the client's new position to a write's response just
// before the headers go out, when the application's transaction has
// committed.
type positionWriter struct {
	http.ResponseWriter
	rt          *Router
	r           *http.Request
	name        string
	wroteHeader bool
}

func (pw *positionWriter) WriteHeader(code int) {
	if !pw.wroteHeader {
		pw.wroteHeader = true
		pw.setPosition()
	}
	pw.ResponseWriter.WriteHeader(code)
}

func (pw *positionWriter) setPosition() {
	pos, err := pw.rt.cfg.Positions.LocalPos(pw.name)
	if err != nil || pos.IsZero() {
		return
	}
	v := formatWritten(requestWritten(pw.r).with(pw.name, pos.TXID))
	pw.Header().Set(HeaderName, v)
	http.SetCookie(pw.ResponseWriter, &http.Cookie{
		Name:     CookieName,
		Value:    v,
		Path:     "/",
		MaxAge:   int(cookieMaxAge / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// cookieMaxAge is how long the cookie lives. A replica lags by seconds;
// past this, a read no longer waits for a write it has surely seen.
const cookieMaxAge = 60 * time.Second

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

// Unwrap lets http.ResponseController reach the connection, for
// protocol upgrades such as WebSockets.
func (pw *positionWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }
