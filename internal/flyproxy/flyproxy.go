// Package flyproxy is a small stand-in for Fly.io's edge proxy, for tests
// and local clusters. It sends each request to one instance and, when the
// response carries `fly-replay: instance=<id>`, sends the request again to
// that instance with `fly-replay-src` set, as Fly's proxy does. Like Fly's,
// it replays only requests whose body is at most MaxReplayBody; a larger
// one that asks for a replay is answered with an error.
package flyproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// MaxReplayBody is the largest request body Fly's proxy replays.
const MaxReplayBody = 1 << 20

// ForceInstanceHeader picks the instance a request goes to first, as the
// header of the same name does on Fly.io.
const ForceInstanceHeader = "Fly-Force-Instance-Id"

// ErrBodyTooLarge is returned for a replay asked for a body over the limit.
var ErrBodyTooLarge = errors.New("flyproxy: request body too large to replay")

// Proxy is an http.Handler in front of a set of instances.
type Proxy struct {
	mu        sync.Mutex
	instances map[string]*url.URL
	next      atomic.Uint64
	// Replays counts the replays the proxy has made.
	Replays atomic.Int64
	rp      *httputil.ReverseProxy
	base    http.RoundTripper
}

// New returns a proxy for instances, a map from instance ID to its base
// URL ("http://127.0.0.1:8080").
func New(instances map[string]string) (*Proxy, error) {
	p := &Proxy{instances: map[string]*url.URL{}, base: http.DefaultTransport}
	for id, raw := range instances {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("flyproxy: instance %s: bad URL %q", id, raw)
		}
		p.instances[id] = u
	}
	if len(p.instances) == 0 {
		return nil, errors.New("flyproxy: no instances")
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.pick(pr.In))
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// Fly's proxy sets this on every request it delivers.
			_, port, _ := net.SplitHostPort(pr.In.Host)
			if port == "" {
				port = "80"
			}
			pr.Out.Header.Set("Fly-Forwarded-Port", port)
		},
		Transport:     roundTripper(p.roundTrip),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			if errors.Is(err, ErrBodyTooLarge) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), code)
		},
	}
	return p, nil
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

// pick chooses the first instance: the forced one, else round robin.
func (p *Proxy) pick(r *http.Request) *url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.instances[r.Header.Get(ForceInstanceHeader)]; ok {
		return u
	}
	ids := make([]string, 0, len(p.instances))
	for id := range p.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return p.instances[ids[p.next.Add(1)%uint64(len(ids))]]
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends req and performs the replay a response asks for.
func (p *Proxy) roundTrip(req *http.Request) (*http.Response, error) {
	// Keep up to the limit of the body, to send it again.
	var kept []byte
	tooLarge := false
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, MaxReplayBody+1))
		if err != nil {
			return nil, err
		}
		kept, tooLarge = b, len(b) > MaxReplayBody
		rest := req.Body
		req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), rest))
	}
	resp, err := p.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	target, ok := replayTarget(resp.Header.Get("Fly-Replay"))
	if !ok {
		return resp, nil
	}
	resp.Body.Close()
	if tooLarge {
		return nil, ErrBodyTooLarge
	}
	p.mu.Lock()
	u, known := p.instances[target]
	p.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("flyproxy: replay to unknown instance %q", target)
	}
	again := req.Clone(req.Context())
	again.URL.Scheme, again.URL.Host = u.Scheme, u.Host
	again.Body = io.NopCloser(bytes.NewReader(kept))
	again.ContentLength = int64(len(kept))
	again.Header.Set("Fly-Replay-Src", "instance="+req.URL.Host+";state=replayed")
	p.Replays.Add(1)
	return p.base.RoundTrip(again)
}

// replayTarget parses "instance=<id>" out of a fly-replay header.
func replayTarget(v string) (string, bool) {
	for _, part := range strings.Split(v, ";") {
		if k, val, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == "instance" && val != "" {
			return val, true
		}
	}
	return "", false
}
