package router

import (
	"bufio"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func testResolver(t *testing.T) *Resolver {
	t.Helper()
	res := &Resolver{
		Routes: []Route{
			{Path: "/customers/{tenant}", DB: "customers/{tenant}.db"},
			{Path: "/admin", DB: "admin.db"},
			{Host: "{tenant}.example.com", DB: "{tenant}.db"},
		},
		Header: "X-Tenant-DB",
	}
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestResolverRoutes(t *testing.T) {
	res := testResolver(t)
	for _, tc := range []struct {
		target, host, header string
		want                 string
	}{
		{"/customers/acme/orders", "x", "", "customers/acme.db"},
		{"/customers/acme", "x", "", "customers/acme.db"},
		{"/customers/caf%C3%A9/", "x", "", "customers/café.db"},
		{"/admin/users", "x", "", "admin.db"},
		{"/", "acme.example.com", "", "acme.db"},
		{"/", "ACME.example.com:8080", "", "acme.db"},
		{"/", "x", "t9.db", "t9.db"},
		// Patterns come before the header.
		{"/customers/acme", "x", "t9.db", "customers/acme.db"},
		// No match: served locally.
		{"/customers", "x", "", ""},
		{"/other", "a.b.example.com", "", ""},
		{"/", "example.com", "", ""},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		r.Host = tc.host
		if tc.header != "" {
			r.Header.Set("X-Tenant-DB", tc.header)
		}
		name, ok, err := res.Resolve(r)
		if err != nil || ok != (tc.want != "") || name != tc.want {
			t.Errorf("%s host %s header %q: got %q ok=%v err=%v, want %q", tc.target, tc.host, tc.header, name, ok, err, tc.want)
		}
	}
}

func TestResolverRefusesHostileTenants(t *testing.T) {
	res := testResolver(t)
	for _, tc := range []struct{ target, host, header string }{
		{"/customers/../x", "x", ""},
		{"/customers/%2E%2E/x", "x", ""},
		{"/customers/a%2Fb/x", "x", ""},
		{"/customers/a%5Cb", "x", ""},
		{"/customers/.hidden", "x", ""},
		{"/customers/%00", "x", ""},
		{"/customers/%ff", "x", ""},
		{"/customers//x", "x", ""},
		{"/", "x", "../etc/x.db"},
		{"/", "x", "/abs.db"},
		{"/", "x", "a//b.db"},
	} {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + tc.target + " HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")))
		if err != nil {
			continue // the server refuses it before any handler sees it
		}
		if tc.header != "" {
			r.Header.Set("X-Tenant-DB", tc.header)
		}
		name, ok, err := res.Resolve(r)
		if !errors.Is(err, ErrBadTenant) || ok {
			t.Errorf("%s header %q: got %q ok=%v err=%v, want ErrBadTenant", tc.target, tc.header, name, ok, err)
		}
	}
}

func TestResolverValidate(t *testing.T) {
	for _, res := range []Resolver{
		{Routes: []Route{{Path: "/a/{tenant}", Host: "x", DB: "a.db"}}},
		{Routes: []Route{{DB: "a.db"}}},
		{Routes: []Route{{Path: "a/{tenant}", DB: "{tenant}.db"}}},
		{Routes: []Route{{Path: "/a", DB: "{tenant}.db"}}},
		{Routes: []Route{{Path: "/{tenant}/{tenant}", DB: "{tenant}.db"}}},
		{Routes: []Route{{Path: "/{tenant}", DB: "../{tenant}.db"}}},
		{Routes: []Route{{Path: "/{tenant}"}}},
		{Static: "../x.db"},
	} {
		if err := res.Validate(); err == nil {
			t.Errorf("%+v validated", res)
		}
	}
}
