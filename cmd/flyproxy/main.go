// Command flyproxy runs a stand-in for Fly.io's edge proxy on loopback,
// for trying a local cluster (scripts/cluster.sh): it spreads requests over
// the instances, honours `fly-replay: instance=<id>` and refuses to replay
// a body over 1 MB, as Fly's proxy does. A request may pick its first
// instance with the Fly-Force-Instance-Id header.
//
//	flyproxy -listen 127.0.0.1:8080 -instance node1=http://127.0.0.11:8080 -instance node2=...
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/flyproxy"
)

type instanceFlags map[string]string

func (f instanceFlags) String() string { return fmt.Sprint(map[string]string(f)) }

func (f instanceFlags) Set(v string) error {
	id, u, ok := strings.Cut(v, "=")
	if !ok || id == "" || u == "" {
		return fmt.Errorf("want ID=URL, got %q", v)
	}
	f[id] = u
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	instances := instanceFlags{}
	flag.Var(instances, "instance", "an instance as ID=URL (repeat)")
	flag.Parse()
	p, err := flyproxy.New(instances)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flyproxy:", err)
		os.Exit(2)
	}
	log.Printf("flyproxy: serving on %s for %v", *listen, instances)
	srv := &http.Server{Addr: *listen, Handler: p, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
