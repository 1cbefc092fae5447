package router

import (
	"fmt"
	"net/http"
	"strings"
)

// WritePolicy decides which requests write. Some apps read with a POST (a
// search form) or write with a GET (a tracking pixel); the exceptions say
// so per method and path.
type WritePolicy struct {
	// Methods are the methods that write. Empty: every method but GET,
	// HEAD and OPTIONS.
	Methods []string
	// Reads are requests that only read although their method writes, as
	// "METHOD /path"; a path ending in "/" matches everything below it.
	Reads []string
	// Writes are requests that write although their method only reads,
	// in the same form.
	Writes []string
}

type requestPattern struct {
	method, path string
}

func (p requestPattern) match(r *http.Request) bool {
	if r.Method != p.method {
		return false
	}
	if strings.HasSuffix(p.path, "/") {
		return strings.HasPrefix(r.URL.Path, p.path)
	}
	return r.URL.Path == p.path
}

func parseRequestPatterns(list []string) ([]requestPattern, error) {
	var out []requestPattern
	for _, s := range list {
		method, path, ok := strings.Cut(strings.TrimSpace(s), " ")
		path = strings.TrimSpace(path)
		if !ok || method == "" || !strings.HasPrefix(path, "/") || method != strings.ToUpper(method) {
			return nil, fmt.Errorf("%q: want \"METHOD /path\", such as \"POST /search\"", s)
		}
		out = append(out, requestPattern{method, path})
	}
	return out, nil
}

// Compile checks the policy and returns its decision function.
func (p WritePolicy) Compile() (func(*http.Request) bool, error) {
	reads, err := parseRequestPatterns(p.Reads)
	if err != nil {
		return nil, fmt.Errorf("reads: %w", err)
	}
	writes, err := parseRequestPatterns(p.Writes)
	if err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	methods := map[string]bool{}
	for _, m := range p.Methods {
		if m == "" || m != strings.ToUpper(m) || strings.ContainsAny(m, " /") {
			return nil, fmt.Errorf("methods: %q is not an HTTP method", m)
		}
		methods[m] = true
	}
	return func(r *http.Request) bool {
		for _, pat := range writes {
			if pat.match(r) {
				return true
			}
		}
		for _, pat := range reads {
			if pat.match(r) {
				return false
			}
		}
		if len(methods) == 0 {
			return IsWrite(r)
		}
		return methods[r.Method]
	}, nil
}
