package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// historyWatch polls one database's LTX files in a file bucket while a
// failover scenario runs, and remembers the checksum each file claims at
// its ends. Compaction deletes level-0 files after a while, so looking
// only at the bucket afterwards could miss two nodes having advanced the
// history from the same TXID; watching catches every file that existed
// for at least one poll.
type historyWatch struct {
	dir  string // the database's directory in the bucket
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	at    map[ltx.TXID]ltx.Checksum // checksum after each TXID some file ends at
	pre   map[ltx.TXID]fileStart    // level-0 file that advances from each TXID
	forks []string
}

// fileStart is a level-0 file and the checksum it advances from.
type fileStart struct {
	name string
	sum  ltx.Checksum
}

// watchHistory starts watching database name in the file bucket at
// bucket, every 50ms until the returned watch is finished or the test
// ends.
func watchHistory(t *testing.T, bucket, name string) *historyWatch {
	w := &historyWatch{
		dir: filepath.Join(bucket, filepath.FromSlash(name)), stop: make(chan struct{}), done: make(chan struct{}),
		at: make(map[ltx.TXID]ltx.Checksum), pre: make(map[ltx.TXID]fileStart),
	}
	go func() {
		defer close(w.done)
		for {
			w.poll()
			select {
			case <-w.stop:
				w.poll()
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.finish() })
	return w
}

// poll reads the ends of every LTX file now in the bucket. A file deleted
// between the listing and the read is skipped: it was compacted away.
func (w *historyWatch) poll() {
	paths, _ := filepath.Glob(filepath.Join(w.dir, "ltx", "*", "*.ltx"))
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".") {
			continue
		}
		hdr, trailer, err := ltx.ReadFileEnds(p)
		if err != nil {
			continue
		}
		level := filepath.Base(filepath.Dir(p))
		w.record(level+"/"+filepath.Base(p), level == "0", hdr, trailer)
	}
}

func (w *historyWatch) record(name string, level0 bool, hdr ltx.Header, trailer ltx.Trailer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sum, ok := w.at[hdr.MaxTXID]; ok && sum != trailer.PostApplyChecksum {
		w.forks = append(w.forks, fmt.Sprintf("%s ends TXID %s at checksum %s, an earlier file at %s",
			name, hdr.MaxTXID, trailer.PostApplyChecksum, sum))
	}
	w.at[hdr.MaxTXID] = trailer.PostApplyChecksum
	if !level0 || hdr.MinTXID <= 1 {
		return
	}
	// Two files may start at one TXID when a restarted node uploads a
	// range again; they are one history only if they start from the
	// same checksum.
	from := hdr.MinTXID - 1
	if prev, ok := w.pre[from]; ok && prev.sum != hdr.PreApplyChecksum {
		w.forks = append(w.forks, fmt.Sprintf("%s and %s both advance the history from TXID %s, from checksums %s and %s",
			prev.name, name, from, prev.sum, hdr.PreApplyChecksum))
	}
	if sum, ok := w.at[from]; ok && sum != hdr.PreApplyChecksum {
		w.forks = append(w.forks, fmt.Sprintf("%s advances from TXID %s at checksum %s, the history there is %s",
			name, from, hdr.PreApplyChecksum, sum))
	}
	w.pre[from] = fileStart{name, hdr.PreApplyChecksum}
}

// finish stops the watch and returns the forks it saw.
func (w *historyWatch) finish() []string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.forks)
}

// checksumAt returns the bucket history's checksum after txid, if the
// watch saw a file end there.
func (w *historyWatch) checksumAt(txid ltx.TXID) (ltx.Checksum, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sum, ok := w.at[txid]
	return sum, ok
}

// bucketHead is the newest position of any LTX file of database name in
// a file bucket.
func bucketHead(bucket, name string) (ferry.Pos, error) {
	files, err := listBucketLTX(filepath.Join(bucket, filepath.FromSlash(name)))
	if err != nil {
		return ferry.Pos{}, err
	}
	var head ferry.Pos
	for _, f := range files {
		if f.hdr.MaxTXID > head.TXID {
			head = ferry.Pos{TXID: f.hdr.MaxTXID, PostApplyChecksum: f.trailer.PostApplyChecksum}
		}
	}
	return head, nil
}

// historyCheck is what a scenario knows about one database once its
// faults are over.
type historyCheck struct {
	name string
	// acked lists row ids an application was told were committed and
	// that must survive: written before the bucket was seen to hold them,
	// or before a drained handoff. With synchronous commits every
	// acknowledged id would belong here.
	acked []int64
	// setAsideOK allows a node to set its copy aside: a holder killed or
	// cut off before it uploaded its last commits diverges from the
	// bucket, which is the loss window without synchronous commits.
	setAsideOK bool
}

// checkHistory checks database hc.name once the cluster settles, with
// watch having followed the bucket during the scenario:
//   - no two nodes advanced the bucket's history from the same TXID, and
//     each level is one unbroken checksum chain;
//   - every running node's copy reaches the bucket's head, with the same
//     rows, and each node's local LTX log agrees with the bucket at every
//     TXID both have;
//   - every acknowledged id in hc.acked is a row on every node;
//   - no node set its copy aside unless hc.setAsideOK.
func checkHistory(t *testing.T, c *failCluster, watch *historyWatch, hc historyCheck) {
	t.Helper()
	var head ferry.Pos
	var rows []string
	var why string
	settled := func() bool {
		var err error
		if head, err = bucketHead(c.bucket, hc.name); err != nil || head.TXID == 0 {
			why = fmt.Sprintf("bucket head %v: %v", head, err)
			return false
		}
		rows = nil
		for i, m := range c.nodes {
			if !c.running(i) {
				continue
			}
			out, err := runBounded(m, 30*time.Second, "sqlite3", "-bail", "-cmd", ".timeout 2000", m.Path(hc.name),
				"PRAGMA integrity_check; SELECT id FROM t ORDER BY id;")
			if err != nil {
				why = fmt.Sprintf("node%d: read: %v %s", i+1, err, out)
				return false
			}
			got := strings.Split(strings.TrimSpace(out), "\n")
			if got[0] != "ok" {
				t.Fatalf("node%d: integrity_check of %s: %s", i+1, hc.name, out)
			}
			rep, err := clusterStatus(m)
			if err != nil {
				return false
			}
			var local *ferry.Pos
			for _, d := range rep.Databases {
				if d.Name == hc.name {
					local = d.Local
				}
			}
			if rows != nil && !slices.Equal(rows, got[1:]) {
				why = fmt.Sprintf("node%d has rows %v at %v, node%d %v; the bucket's head is at %v", i+1, got[1:], local, i, rows, head)
				return false
			}
			rows = got[1:]
			if local == nil || *local != head {
				why = fmt.Sprintf("node%d is at %v, the bucket's head at %v", i+1, local, head)
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !settled(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			var outs string
			for i, n := range c.nodes {
				outs += fmt.Sprintf("node%d:\n%s\n", i+1, n.output)
				// The backing file, read outside the mount, tells a stale
				// kernel cache from a copy that did not move.
				cp := filepath.Join(t.TempDir(), "backing.db")
				if data, err := os.ReadFile(n.TreePath(hc.name)); err == nil && os.WriteFile(cp, data, 0o644) == nil {
					out, _ := exec.Command("sqlite3", cp, "SELECT group_concat(id) FROM t;").CombinedOutput()
					outs += fmt.Sprintf("node%d backing file rows: %s\n", i+1, out)
				}
			}
			t.Fatalf("%s: the nodes did not settle at the bucket's head within 30s: %s\n%s", hc.name, why, outs)
		}
	}
	if err := checkBucketChain(filepath.Join(c.bucket, filepath.FromSlash(hc.name)), head); err != nil {
		t.Fatalf("%s: %v", hc.name, err)
	}
	if forks := watch.finish(); len(forks) > 0 {
		t.Fatalf("%s: two nodes advanced the history from the same TXID:\n%s", hc.name, strings.Join(forks, "\n"))
	}
	for i, m := range c.nodes {
		if !c.running(i) {
			continue
		}
		checkLocalLog(t, m, hc.name, watch, i)
	}
	have := make(map[int64]bool, len(rows))
	for _, r := range rows {
		id, err := strconv.ParseInt(r, 10, 64)
		if err != nil {
			t.Fatalf("%s: row id %q: %v", hc.name, r, err)
		}
		have[id] = true
	}
	for _, id := range hc.acked {
		if !have[id] {
			t.Fatalf("%s: acknowledged row %d is lost; rows now %v", hc.name, id, rows)
		}
	}
	for i, m := range c.nodes {
		if !c.running(i) {
			continue
		}
		rep, err := clusterStatus(m)
		if err != nil {
			t.Fatalf("node%d: status: %v", i+1, err)
		}
		for _, d := range rep.Databases {
			if d.Name != hc.name || d.SetAside == "" {
				continue
			}
			if !hc.setAsideOK {
				t.Fatalf("node%d set %s aside (%s), though every write was in the bucket before the fault\n%s",
					i+1, hc.name, d.SetAside, m.output)
			}
			t.Logf("node%d set a diverged copy of %s aside in %s: the loss window", i+1, hc.name, d.SetAside)
		}
	}
}

// checkLocalLog checks that every file of node i's local LTX log for
// database name ends at the checksum the bucket's history has at that
// TXID: a node whose copy forked and was not set aside fails here.
func checkLocalLog(t *testing.T, m *testMount, name string, watch *historyWatch, i int) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(m.LTXDir(name), "*.ltx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		hdr, trailer, err := ltx.ReadFileEnds(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue // pruned meanwhile
			}
			t.Fatalf("node%d: %v", i+1, err)
		}
		if sum, ok := watch.checksumAt(hdr.MaxTXID); ok && sum != trailer.PostApplyChecksum {
			t.Fatalf("node%d: local LTX file %s ends TXID %s at checksum %s, the bucket's history at %s",
				i+1, filepath.Base(p), hdr.MaxTXID, trailer.PostApplyChecksum, sum)
		}
	}
}
