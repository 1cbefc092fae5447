package metrics

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

var (
	descTXID       = desc("db_txid", "The TXID of the database's local copy.", "db")
	descBucketTXID = desc("db_bucket_txid", "The TXID of the newest change set the bucket holds, as this node knows.", "db")
	descLagTXIDs   = desc("db_lag_txids", "How many transactions the local copy trails the bucket by.", "db")
	descLagSeconds = desc("db_lag_seconds", "How long the local copy has trailed the bucket; 0 when caught up.", "db")
	descBacklog    = desc("db_upload_backlog_txids", "How many local transactions the bucket does not hold yet.", "db")
	descCommits    = desc("db_commits_total", "Transactions this node committed and captured.", "db")
	descChangeSets = desc("db_changesets_total", "Change sets (LTX files) this node wrote.", "db")
	descCSBytes    = desc("db_changeset_bytes_total", "Bytes of the change sets this node wrote.", "db")
	descUploads    = desc("db_uploads_total", "Uploads that advanced the bucket's position.", "db")
	descUploadErrs = desc("db_upload_errors_total", "Uploads that failed.", "db")
	descBucketReqs = desc("bucket_requests_total", "Requests to the bucket, by operation.", "op")
	descBucketByte = desc("bucket_bytes_total", "Bytes moved to (up) and from (down) the bucket.", "direction")
	descLeaseHeld  = desc("lease_held", "1 when this node holds the database's write lease, else 0.", "db")
	descLeaseEpoch = desc("lease_epoch", "The epoch of the database's lease, whoever holds it.", "db")
)

// nodeCollector reads the node's present state at each scrape.
type nodeCollector struct{ m *Metrics }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTXID, descBucketTXID, descLagTXIDs, descLagSeconds, descBacklog,
		descCommits, descChangeSets, descCSBytes, descUploads, descUploadErrs, descBucketReqs, descBucketByte,
		descLeaseHeld, descLeaseEpoch} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	var bucket BucketStats
	if m.src.Bucket != nil {
		bucket = m.src.Bucket()
		counter(descBucketReqs, float64(bucket.Puts), "put")
		counter(descBucketReqs, float64(bucket.Gets), "get")
		counter(descBucketReqs, float64(bucket.Lists), "list")
		counter(descBucketReqs, float64(bucket.Deletes), "delete")
		counter(descBucketByte, float64(bucket.BytesUp), "up")
		counter(descBucketByte, float64(bucket.BytesDown), "down")
	}
	for _, st := range m.lagStates() {
		gauge(descTXID, float64(st.local), st.name)
		if st.known {
			gauge(descBucketTXID, float64(st.bucket), st.name)
			gauge(descLagTXIDs, float64(st.behind), st.name)
			gauge(descLagSeconds, st.lag.Seconds(), st.name)
			gauge(descBacklog, float64(st.ahead), st.name)
		}
		if db, ok := bucket.Databases[st.name]; ok {
			counter(descUploads, float64(db.Uploads), st.name)
			counter(descUploadErrs, float64(db.UploadErrors), st.name)
		}
		if m.src.Holder != nil {
			holder, epoch, ok := m.src.Holder(st.name)
			held := 0.0
			if ok && holder == m.src.Node {
				held = 1
			}
			gauge(descLeaseHeld, held, st.name)
			if ok {
				gauge(descLeaseEpoch, float64(epoch), st.name)
			}
		}
	}
	if m.src.Commits != nil {
		for name, cs := range m.src.Commits() {
			counter(descCommits, float64(cs.Transactions), name)
			counter(descChangeSets, float64(cs.ChangeSets), name)
			counter(descCSBytes, float64(cs.Bytes), name)
		}
	}
}

// dbState is one database's position against the bucket.
type dbState struct {
	name          string
	local, bucket uint64
	known         bool   // the bucket position is known
	behind, ahead uint64 // local trails / leads the bucket by
	lag           time.Duration
}

// lagStates reads every database's positions and updates the lag clock.
func (m *Metrics) lagStates() []dbState {
	if m.src.Databases == nil || m.src.LocalPos == nil {
		return nil
	}
	var bucket map[string]DBStats
	if m.src.Bucket != nil {
		bucket = m.src.Bucket().Databases
	}
	names := m.src.Databases()
	sort.Strings(names)
	out := make([]dbState, 0, len(names))
	for _, name := range names {
		pos, err := m.src.LocalPos(name)
		if err != nil {
			continue
		}
		st := dbState{name: name, local: uint64(pos.TXID)}
		if b, ok := bucket[name]; ok && !b.BucketPos.IsZero() {
			st.known, st.bucket = true, uint64(b.BucketPos.TXID)
			switch {
			case st.bucket > st.local:
				st.behind = st.bucket - st.local
			case st.local > st.bucket:
				st.ahead = st.local - st.bucket
			}
		}
		st.lag = m.lag.update(name, st.behind > 0)
		out = append(out, st)
	}
	return out
}

// lagTracker remembers since when each database has trailed the bucket.
type lagTracker struct {
	now   func() time.Time
	mu    sync.Mutex
	since map[string]time.Time
}

func newLagTracker(now func() time.Time) *lagTracker {
	return &lagTracker{now: now, since: map[string]time.Time{}}
}

// update records whether name is behind now and returns for how long it
// has been, as far as the calls show.
func (l *lagTracker) update(name string, behind bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !behind {
		delete(l.since, name)
		return 0
	}
	since, ok := l.since[name]
	if !ok {
		l.since[name] = now
		return 0
	}
	return now.Sub(since)
}

// Sample reads every database's lag now. Calling it on an interval makes
// ferry_db_lag_seconds and the health check accurate between scrapes.
func (m *Metrics) Sample() { m.lagStates() }

// HealthReport is the body of the health check.
type HealthReport struct {
	// Status is "ok" or "lagging".
	Status string `json:"status"`
	// Lagging lists the databases that have trailed the bucket for longer
	// than the allowed lag.
	Lagging []LaggingDB `json:"lagging,omitempty"`
}

// LaggingDB is one lagging database in a HealthReport.
type LaggingDB struct {
	Name       string  `json:"name"`
	LagTXIDs   uint64  `json:"lagTxids"`
	LagSeconds float64 `json:"lagSeconds"`
}

// Health returns the node's readiness: ok unless a database has trailed
// the bucket for longer than maxLag.
func (m *Metrics) Health(maxLag time.Duration) HealthReport {
	rep := HealthReport{Status: "ok"}
	for _, st := range m.lagStates() {
		if st.behind > 0 && st.lag > maxLag {
			rep.Lagging = append(rep.Lagging, LaggingDB{Name: st.name, LagTXIDs: st.behind, LagSeconds: st.lag.Seconds()})
		}
	}
	if len(rep.Lagging) > 0 {
		rep.Status = "lagging"
	}
	return rep
}

// HealthHandler answers 200 with the report while the node is healthy and
// 503 while it lags by more than maxLag, so that a load balancer's checks
// keep it out of rotation until it has caught up.
func (m *Metrics) HealthHandler(maxLag time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := m.Health(maxLag)
		code := http.StatusOK
		if rep.Status != "ok" {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}
