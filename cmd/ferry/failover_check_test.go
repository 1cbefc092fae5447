package main

import (
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

// TestHistoryWatchFindsForks feeds the failover suite's history watch the
// ends of level-0 files as two nodes would leave them: one unbroken
// history passes, and two files that advance from the same TXID to
// different checksums are reported as a fork.
func TestHistoryWatchFindsForks(t *testing.T) {
	file := func(w *historyWatch, name string, lo, hi ltx.TXID, pre, post ltx.Checksum) {
		w.record(name, true, ltx.Header{MinTXID: lo, MaxTXID: hi, PreApplyChecksum: pre}, ltx.Trailer{PostApplyChecksum: post})
	}
	one := &historyWatch{at: map[ltx.TXID]ltx.Checksum{}, pre: map[ltx.TXID]fileStart{}}
	file(one, "a", 1, 1, 0, 11)
	file(one, "b", 2, 2, 11, 12)
	file(one, "b-again", 2, 3, 11, 13) // a restarted node uploading a range again
	if len(one.forks) != 0 {
		t.Fatalf("one history reported as forked: %v", one.forks)
	}

	forked := &historyWatch{at: map[ltx.TXID]ltx.Checksum{}, pre: map[ltx.TXID]fileStart{}}
	file(forked, "a", 1, 1, 0, 11)
	file(forked, "node1", 2, 2, 11, 12)
	file(forked, "node2", 2, 2, 11, 22)
	if len(forked.forks) == 0 {
		t.Fatal("two files ending TXID 2 at different checksums not reported")
	}

	// The file before the fork was compacted away before the watch saw it.
	late := &historyWatch{at: map[ltx.TXID]ltx.Checksum{}, pre: map[ltx.TXID]fileStart{}}
	file(late, "node1", 3, 3, 12, 13)
	file(late, "node2", 3, 4, 99, 24)
	if len(late.forks) == 0 {
		t.Fatal("two files advancing from TXID 2 at different checksums not reported")
	}
}
