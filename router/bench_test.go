package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/ferrydb/ferry"
)

// BenchmarkRouter compares a GET straight to the app with one through the
// router served locally, and one a replica forwards to the holder's
// router; the ratio of the router cases' ns/op to the direct one's is the
// router's overhead.
func BenchmarkRouter(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)
	leases := leaseTable{"t1.db": "node-a"}
	newRouter := func(node string, peer *url.URL) *httptest.Server {
		rt, err := New(Config{
			Target: target, NodeID: node, Leases: leases, Positions: &positions{pos: map[string]ferry.Pos{}},
			Database: (&Resolver{Header: "X-Ferry-DB"}).Resolve,
			IsWrite:  func(*http.Request) bool { return true },
			Peer:     func(string) (*url.URL, bool) { return peer, peer != nil },
		})
		if err != nil {
			b.Fatal(err)
		}
		return httptest.NewServer(rt)
	}
	holder := newRouter("node-a", nil)
	defer holder.Close()
	holderURL, _ := url.Parse(holder.URL)
	replica := newRouter("node-b", holderURL)
	defer replica.Close()

	for _, bc := range []struct{ name, url string }{
		{"direct", app.URL},
		{"local", holder.URL},
		{"forwarded", replica.URL},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &http.Client{}
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, bc.url+"/x", nil)
				req.Header.Set("X-Ferry-DB", "t1.db")
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
