package router

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferrydb/ferry"
)

// ErrBadTenant reports a request whose tenant does not make a valid
// database name. The router answers it with 400 and never passes it on.
var ErrBadTenant = errors.New("invalid tenant")

// placeholder is the one variable a route pattern and its database
// template may name.
const placeholder = "{tenant}"

// Route maps requests to a database. Exactly one of Path and Host is set.
type Route struct {
	// Path is a path pattern such as "/customers/{tenant}": the request
	// path must start with its segments, and {tenant} takes one whole
	// segment.
	Path string
	// Host is a host pattern such as "{tenant}.example.com"; {tenant}
	// takes one DNS label. The port, if any, is ignored.
	Host string
	// DB is the database name, with {tenant} replaced, such as
	// "customers/{tenant}.db".
	DB string
}

// Resolver maps a request to the database it touches. Path and host
// routes are tried first, in order, then the header, then the static
// database. A request none of them matches touches no database.
type Resolver struct {
	// Routes are tried in order; the first that matches decides.
	Routes []Route
	// Header, when set, names a request header that carries the database
	// name itself.
	Header string
	// Static, when set, is the database every other request touches.
	Static string
}

// Validate checks the routes' patterns and the static name.
func (res *Resolver) Validate() error {
	for i, rt := range res.Routes {
		if err := rt.validate(); err != nil {
			return fmt.Errorf("route %d: %w", i+1, err)
		}
	}
	if res.Static != "" {
		if err := ferry.ValidateName(res.Static); err != nil {
			return fmt.Errorf("static database: %w", err)
		}
	}
	return nil
}

func (rt Route) validate() error {
	switch {
	case (rt.Path == "") == (rt.Host == ""):
		return errors.New("set exactly one of path and host")
	case rt.Path != "" && !strings.HasPrefix(rt.Path, "/"):
		return fmt.Errorf("path %q must start with /", rt.Path)
	case rt.DB == "":
		return errors.New("no db")
	}
	pattern := rt.Path + rt.Host
	if n := strings.Count(pattern, placeholder); n > 1 {
		return fmt.Errorf("pattern %q names %s more than once", pattern, placeholder)
	}
	if strings.Contains(rt.DB, placeholder) && !strings.Contains(pattern, placeholder) {
		return fmt.Errorf("db %q uses %s but pattern %q does not capture it", rt.DB, placeholder, pattern)
	}
	// The template must make a valid name for a plain tenant.
	if err := ferry.ValidateName(strings.ReplaceAll(rt.DB, placeholder, "t")); err != nil {
		return fmt.Errorf("db %q: %w", rt.DB, err)
	}
	return nil
}

// Resolve returns the database request r touches. ok is false when it
// touches none; err is set (wrapping ErrBadTenant) when it names a tenant
// or database that is not a valid name.
func (res *Resolver) Resolve(r *http.Request) (name string, ok bool, err error) {
	for _, rt := range res.Routes {
		tenant, matched := rt.match(r)
		if !matched {
			continue
		}
		name, err := rt.name(tenant)
		return name, err == nil, err
	}
	if res.Header != "" {
		if v := r.Header.Get(res.Header); v != "" {
			if err := ferry.ValidateName(v); err != nil {
				return "", false, fmt.Errorf("%w: header %s: %w", ErrBadTenant, res.Header, err)
			}
			return v, true, nil
		}
	}
	if res.Static != "" {
		return res.Static, true, nil
	}
	return "", false, nil
}

// match reports whether r matches the route, and the captured tenant.
func (rt Route) match(r *http.Request) (tenant string, ok bool) {
	if rt.Host != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return matchHost(rt.Host, strings.ToLower(host))
	}
	return matchPath(rt.Path, r.URL.EscapedPath())
}

// matchPath matches the escaped request path segment by segment, so that
// an escaped slash in a tenant stays inside its segment and is refused
// later rather than shifting the match.
func matchPath(pattern, path string) (string, bool) {
	want := strings.Split(strings.Trim(pattern, "/"), "/")
	got := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(got) < len(want) {
		return "", false
	}
	var tenant string
	for i, w := range want {
		if w == placeholder {
			t, err := url.PathUnescape(got[i])
			if err != nil {
				// Captured as is: the name check refuses the %.
				t = got[i]
			}
			tenant = t
			continue
		}
		if got[i] != w {
			return "", false
		}
	}
	return tenant, true
}

func matchHost(pattern, host string) (string, bool) {
	pattern = strings.ToLower(pattern)
	before, after, found := strings.Cut(pattern, placeholder)
	if !found {
		return "", host == pattern
	}
	if len(host) <= len(before)+len(after) || !strings.HasPrefix(host, before) || !strings.HasSuffix(host, after) {
		return "", false
	}
	tenant := host[len(before) : len(host)-len(after)]
	if strings.Contains(tenant, ".") {
		return "", false // one label only: a.b.example.com is not tenant "a.b"
	}
	return tenant, true
}

// name substitutes a tenant into the route's template and checks it. A
// tenant must be one name component: no slash, no dot-only name.
func (rt Route) name(tenant string) (string, error) {
	if !strings.Contains(rt.DB, placeholder) {
		return rt.DB, nil
	}
	if tenant == "" || strings.ContainsAny(tenant, "/\\\x00") || strings.HasPrefix(tenant, ".") {
		return "", fmt.Errorf("%w: %q", ErrBadTenant, tenant)
	}
	if err := ferry.ValidateComponent(tenant); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadTenant, err)
	}
	name := strings.ReplaceAll(rt.DB, placeholder, tenant)
	if err := ferry.ValidateName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadTenant, err)
	}
	return name, nil
}
