package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// scrape fetches and parses a node's /metrics with Prometheus's own text
// parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose labels
// include labels ("k=v" pairs); ok is false when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	fam := fams[name]
	if fam == nil {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// testRouterMetrics scrapes both nodes of the router cluster after the
// other subtests ran, and checks that each metric saw what they did.
func testRouterMetrics(t *testing.T, rc *routerCluster) {
	type want struct {
		node   int
		name   string
		labels []string
		min    float64
	}
	check := func(w want) error {
		v, ok := metricValue(scrape(t, rc.metrics[w.node]), w.name, w.labels...)
		if !ok || v < w.min {
			return fmt.Errorf("node%d %s%v = %v (present %v), want >= %v", w.node+1, w.name, w.labels, v, ok, w.min)
		}
		return nil
	}
	for _, w := range []want{
		{1, "ferry_router_requests_total", []string{"decision=forwarded"}, 1},
		{1, "ferry_router_requests_total", []string{"decision=replayed"}, 1},
		{1, "ferry_router_requests_total", []string{"decision=rejected"}, 5},
		{1, "ferry_router_requests_total", []string{"decision=unavailable"}, 1},
		{1, "ferry_router_requests_total", []string{"decision=local"}, 1},
		{0, "ferry_db_txid", []string{"db=acme.db"}, 5},
		{0, "ferry_db_commits_total", []string{"db=acme.db"}, 5},
		{0, "ferry_db_changesets_total", []string{"db=acme.db"}, 1},
		{0, "ferry_db_changeset_bytes_total", []string{"db=acme.db"}, 100},
		{0, "ferry_lease_held", []string{"db=acme.db"}, 1},
		{0, "ferry_lease_epoch", []string{"db=acme.db"}, 1},
		{0, "ferry_lease_acquisitions_total", []string{"db=acme.db"}, 1},
		// Reads and writes may bypass FUSE (passthrough); opens do not.
		{0, "ferry_fuse_requests_total", []string{"op=lookup"}, 1},
		{0, "ferry_fuse_requests_total", []string{"op=open"}, 1},
		{1, "ferry_restores_total", []string{"result=ok"}, 1},
		{1, "ferry_restore_duration_seconds", nil, 1},
		{1, "ferry_db_lag_seconds", []string{"db=ryw-a.db"}, 0},
		{1, "ferry_db_lag_txids", []string{"db=ryw-a.db"}, 0},
	} {
		if err := check(w); err != nil {
			t.Error(err)
		}
	}
	if v, ok := metricValue(scrape(t, rc.metrics[1]), "ferry_lease_held", "db=ryw-a.db"); !ok || v != 0 {
		t.Errorf("node2 ferry_lease_held{ryw-a.db} = %v (present %v), want 0", v, ok)
	}
	// Uploads run on their own interval: wait for them rather than race.
	for _, w := range []want{
		{0, "ferry_db_uploads_total", []string{"db=acme.db"}, 1},
		{0, "ferry_bucket_requests_total", []string{"op=put"}, 1},
		{0, "ferry_db_bucket_txid", []string{"db=acme.db"}, 5},
		{1, "ferry_bucket_requests_total", []string{"op=get"}, 1},
	} {
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for err = check(w); err != nil && time.Now().Before(deadline); err = check(w) {
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Error(err)
		}
	}
	for _, url := range []string{"http://" + rc.metrics[1] + "/health", "http://" + rc.proxies[1] + "/health"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", url, resp.Status)
		}
	}
}
