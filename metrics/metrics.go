// Package metrics exposes a node's state to Prometheus, with names on the
// model of LiteFS's (litefs_db_lag_seconds becomes ferry_db_lag_seconds),
// and serves the lag-aware health check that keeps a lagging node out of a
// load balancer's rotation.
//
// Gauges that describe the present (positions, lag, leases) are read from
// the node when Prometheus scrapes; counters of events (router decisions,
// FUSE requests, restores) are counted as they happen.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrydb/ferry"
)

// Namespace prefixes every metric name.
const Namespace = "ferry"

// DBStats is what the replicator knows of one database.
type DBStats struct {
	// BucketPos is the newest position the bucket holds.
	BucketPos ferry.Pos
	// Uploads and UploadErrors count successful and failed syncs.
	Uploads, UploadErrors int64
}

// BucketStats is the replicator's counters.
type BucketStats struct {
	Puts, Gets, Lists, Deletes int64
	BytesUp, BytesDown         int64
	Databases                  map[string]DBStats
}

// Sources is what the metrics read from the node. Any function may be nil;
// what it would report is then left out.
type Sources struct {
	// Node is this node's ID.
	Node string
	// Databases lists the databases on this node.
	Databases func() []string
	// LocalPos returns a database's local position.
	LocalPos func(name string) (ferry.Pos, error)
	// Bucket returns the replicator's counters and per-database state.
	Bucket func() BucketStats
	// Commits returns what this node's writers logged per database.
	Commits func() map[string]ferry.CommitStats
	// Holder tells who holds a database's lease and its epoch.
	Holder func(name string) (node string, epoch uint64, ok bool)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Metrics is one node's registry.
type Metrics struct {
	src      Sources
	registry *prometheus.Registry
	lag      *lagTracker

	decisions *prometheus.CounterVec
	fuseOps   *prometheus.CounterVec
	// fuseOpCounters holds fuseOps' counters by operation; read-only
	// after New.
	fuseOpCounters map[string]prometheus.Counter
	restores       *prometheus.CounterVec
	restoreTime    prometheus.Histogram
	acquisitions   *prometheus.CounterVec

	mu       sync.Mutex
	lastHeld map[string]uint64 // epoch of each lease this node was last seen holding
}

// New returns the metrics of a node.
func New(src Sources) *Metrics {
	if src.Now == nil {
		src.Now = time.Now
	}
	m := &Metrics{
		src:      src,
		registry: prometheus.NewRegistry(),
		lag:      newLagTracker(src.Now),
		lastHeld: map[string]uint64{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "router_requests_total",
			Help: "Requests the HTTP proxy handled, by decision: local, replayed, forwarded, waited, rejected, unavailable.",
		}, []string{"decision"}),
		fuseOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "fuse_requests_total",
			Help: "FUSE requests from the kernel, by operation.",
		}, []string{"op"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "restores_total",
			Help: "Databases fetched from the bucket because they were missing locally, by result (ok, error).",
		}, []string{"result"}),
		restoreTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "restore_duration_seconds",
			Help:    "How long fetching a missing database from the bucket took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "lease_acquisitions_total",
			Help: "Times this node took a database's lease (a new epoch).",
		}, []string{"db"}),
	}
	m.fuseOpCounters = make(map[string]prometheus.Counter, len(fuseOpNames))
	for _, op := range fuseOpNames {
		m.fuseOpCounters[op] = m.fuseOps.WithLabelValues(op)
	}
	m.registry.MustRegister(m.decisions, m.fuseOps, m.restores, m.restoreTime, m.acquisitions,
		&nodeCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, to add collectors to.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveDecision counts one of the router's decisions.
func (m *Metrics) ObserveDecision(decision string) {
	m.decisions.WithLabelValues(decision).Inc()
}

// fuseOpNames are the operations the mount counts; their counters are
// made up front so that counting a request takes no lock.
var fuseOpNames = []string{"lookup", "getattr", "setattr", "mkdir", "unlink", "rmdir", "rename", "create",
	"open", "read", "write", "flush", "fsync", "release", "getlk", "setlk", "setlkw", "opendir",
	"readdir", "readdirplus", "fallocate"}

// CountFUSEOp counts one FUSE request.
func (m *Metrics) CountFUSEOp(op string) {
	if c, ok := m.fuseOpCounters[op]; ok {
		c.Inc()
		return
	}
	m.fuseOps.WithLabelValues(op).Inc()
}

// LeaseChanged is told of every lease change this node learns of; it
// counts the acquisitions of this node.
func (m *Metrics) LeaseChanged(name, holder string, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if holder != m.src.Node {
		delete(m.lastHeld, name)
		return
	}
	if m.lastHeld[name] != epoch {
		m.lastHeld[name] = epoch
		m.acquisitions.WithLabelValues(name).Inc()
	}
}

// WrapRestorer returns r with its restores counted and timed.
func (m *Metrics) WrapRestorer(r ferry.Restorer) ferry.Restorer {
	return timedRestorer{r: r, m: m}
}

type timedRestorer struct {
	r ferry.Restorer
	m *Metrics
}

func (t timedRestorer) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	start := t.m.src.Now()
	pos, err := t.r.Restore(ctx, name, path)
	t.m.restoreTime.Observe(t.m.src.Now().Sub(start).Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	t.m.restores.WithLabelValues(result).Inc()
	return pos, err
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
