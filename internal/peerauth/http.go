package peerauth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// HTTP headers that carry the credentials. The secret travels as a bearer
// token, so proxies and logs treat it as one.
const (
	HeaderClusterID = "Ferry-Cluster-Id"
	headerAuth      = "Authorization"
	bearerPrefix    = "Bearer "

	// HeaderSecret carries the secret on requests whose Authorization
	// header belongs to someone else: an application's request that one
	// node's proxy forwards to another's.
	HeaderSecret = "Ferry-Cluster-Secret"
)

// Handler returns next wrapped so that it only ever sees requests that
// carry the cluster's ID and secret. Any other request gets 401 with a
// short JSON error ({"error": "..."}), and a log line; next is not called.
func (a *Auth) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, _ := strings.CutPrefix(r.Header.Get(headerAuth), bearerPrefix)
		if err := a.Check(r.Header.Get(HeaderClusterID), secret); err != nil {
			a.refused("http "+r.Method+" "+r.URL.Path, r.RemoteAddr, err)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(struct {
				Error string `json:"error"`
			}{"unauthorized: " + err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetHeaders adds the cluster's credentials to h.
func (a *Auth) SetHeaders(h http.Header) {
	h.Set(HeaderClusterID, a.id)
	h.Set(headerAuth, bearerPrefix+a.secret)
}

// SetForwardHeaders adds the cluster's credentials to h in HeaderClusterID
// and HeaderSecret, leaving the Authorization header, the client's own,
// alone.
func (a *Auth) SetForwardHeaders(h http.Header) {
	h.Set(HeaderClusterID, a.id)
	h.Set(HeaderSecret, a.secret)
}

// CheckForwardHeaders checks credentials SetForwardHeaders added.
func (a *Auth) CheckForwardHeaders(h http.Header) error {
	return a.Check(h.Get(HeaderClusterID), h.Get(HeaderSecret))
}

// Transport returns base (nil: http.DefaultTransport) wrapped so that
// every request it sends carries the cluster's credentials.
func (a *Auth) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{auth: a, base: base}
}

type transport struct {
	auth *Auth
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper. The request is cloned, as a
// RoundTripper must not change the caller's.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	t.auth.SetHeaders(r.Header)
	return t.base.RoundTrip(r)
}
