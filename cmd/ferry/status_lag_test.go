package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
	"github.com/ferrydb/ferry/status"
)

func TestComputeLag(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	head := func(txid uint64, commit time.Time) func(string) (ferry.Pos, time.Time, bool) {
		return func(string) (ferry.Pos, time.Time, bool) {
			return ferry.Pos{TXID: ltx.TXID(txid), PostApplyChecksum: 1}, commit, true
		}
	}
	mine := func(tm time.Time, ok bool) func(string) (time.Time, bool) {
		return func(string) (time.Time, bool) { return tm, ok }
	}
	at := func(txid uint64) *ferry.Pos { return &ferry.Pos{TXID: ltx.TXID(txid), PostApplyChecksum: 1} }
	for _, tc := range []struct {
		name   string
		src    statusSources
		holder bool
		local  *ferry.Pos
		tx     string // "" : unknown
		sec    string
	}{
		{"holder", statusSources{HolderHead: head(9, t0)}, true, at(7), "0", "0.000"},
		{"no source", statusSources{}, false, at(7), "", ""},
		{"caught up", statusSources{HolderHead: head(7, t0), CommitTime: mine(t0, true)}, false, at(7), "0", "0.000"},
		{"ahead of the head", statusSources{HolderHead: head(5, t0), CommitTime: mine(t0, true)}, false, at(7), "0", "0.000"},
		{"behind", statusSources{HolderHead: head(10, t0.Add(2500*time.Millisecond)), CommitTime: mine(t0, true)}, false, at(7), "3", "2.500"},
		{"own commit time unknown", statusSources{HolderHead: head(10, t0), CommitTime: mine(time.Time{}, false)}, false, at(7), "3", ""},
		{"holder's commit time unknown", statusSources{HolderHead: head(10, time.Time{}), CommitTime: mine(t0, true)}, false, at(7), "3", ""},
		{"clock skew", statusSources{HolderHead: head(10, t0), CommitTime: mine(t0.Add(time.Second), true)}, false, at(7), "3", "0.000"},
		{"empty copy", statusSources{HolderHead: head(4, t0), CommitTime: mine(time.Time{}, false)}, false, nil, "4", ""},
	} {
		tx, sec := status.Lag(tc.src, "a.db", tc.holder, tc.local)
		d := dbStatus{LagTXIDs: tx, LagSeconds: sec}
		want := "-"
		if tc.tx != "" {
			want = tc.tx + "tx/"
			if tc.sec == "" {
				want += "?s"
			} else {
				want += tc.sec + "s"
			}
		}
		if got := formatBehind(d); got != want {
			t.Errorf("%s: %q, want %q", tc.name, got, want)
		}
	}
}

func TestPrintStatusShowsLagBehindHolder(t *testing.T) {
	tx, sec := int64(3), 1.25
	var b bytes.Buffer
	rep := statusReport{Node: "n2", Type: "raft", Databases: []dbStatus{{Name: "a.db", Holder: "n1", LagTXIDs: &tx, LagSeconds: &sec}}}
	if err := printStatus(&b, rep, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "BEHIND HOLDER") || !strings.Contains(b.String(), "3tx/1.250s") {
		t.Fatalf("output:\n%s", b.String())
	}
}
