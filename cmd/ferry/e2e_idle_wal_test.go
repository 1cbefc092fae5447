package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// queryShellProgram keeps one WAL-mode SQLite connection open, idle
// between statements, and answers each statement with "ok" followed by
// the result's values, or "error: ...".
const queryShellProgram = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0.2)
db.execute("PRAGMA journal_mode=WAL")
for line in sys.stdin:
    try:
        rows = db.execute(line).fetchall()
        print("ok " + ",".join(str(v) for r in rows for v in r), flush=True)
    except sqlite3.Error as e:
        print("error: %s" % e, flush=True)
`

// startQueryShell starts a shell running queryShellProgram on path.
func startQueryShell(t *testing.T, path string) *sqlShell {
	t.Helper()
	return startPythonShell(t, queryShellProgram, path)
}

// query runs one statement and returns the shell's answer with the
// result's values.
func (s *sqlShell) query(t *testing.T, stmt string) string {
	t.Helper()
	return s.exec(t, stmt)
}

// TestE2EReplicaFollowsWithIdleWALConnection keeps one WAL-mode connection
// open and idle on a replica. Such a connection holds a shared lock on the
// database file for as long as it is open, yet the replica must go on
// following the holder: the idle connection's next query and a fresh
// connection both see the holder's new rows. The lease is then handed to
// the replica, whose catch-up must not wait for that connection either,
// and a write there succeeds while the connection is still open.
func TestE2EReplicaFollowsWithIdleWALConnection(t *testing.T) {
	bucket := filepath.Join(t.TempDir(), "bucket")
	addrs := []string{freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.2")}
	peers := `["` + strings.Join(addrs, `", "`) + `"]`
	var nodes []*testMount
	for i, addr := range addrs {
		nodes = append(nodes, startMountWith(t, fmt.Sprintf(`lease:
  type: raft
  node: node%d
  ttl: 5s
  acquire-timeout: 3s
  raft:
    bind: %q
    peers: %s
    heartbeat-timeout: 500ms
    election-timeout: 500ms
bucket:
  type: file
  path: %q
  upload-interval: 100ms
  follow-interval: 100ms
`, i+1, addr, peers, bucket)))
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s\nnode1:\n%s\nnode2:\n%s", what, nodes[0].output, nodes[1].output)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("no leader with both members", func() bool {
		rep, err := clusterStatus(nodes[0])
		return err == nil && rep.Leader != "" && len(rep.Members) == 2
	})
	sqlite := func(m *testMount, sql string) (string, error) {
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 2000", m.Path("shop.db"), sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	if out, err := sqlite(nodes[0], "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);"); err != nil {
		t.Fatalf("write on node1: %v %s", err, out)
	}
	waitFor("node1 never uploaded shop.db", func() bool {
		m, _ := filepath.Glob(filepath.Join(bucket, "shop.db", "ltx", "0", "*.ltx"))
		return len(m) > 0
	})
	waitFor("node2 never restored shop.db", func() bool {
		out, err := sqlite(nodes[1], "SELECT count(*) FROM t")
		return err == nil && out == "1"
	})

	app := startQueryShell(t, nodes[1].Path("shop.db"))
	if got := app.query(t, "SELECT group_concat(x) FROM t"); got != "ok 1" {
		t.Fatalf("idle connection on node2 reads %q, want ok 1", got)
	}

	for _, v := range []int{2, 3} {
		if out, err := sqlite(nodes[0], fmt.Sprintf("INSERT INTO t VALUES (%d);", v)); err != nil {
			t.Fatalf("write on node1: %v %s", err, out)
		}
	}
	waitFor("a fresh connection on node2 never saw node1's new rows", func() bool {
		out, err := sqlite(nodes[1], "SELECT group_concat(x) FROM t")
		return err == nil && out == "1,2,3"
	})
	if got := app.query(t, "SELECT group_concat(x) FROM t"); got != "ok 1,2,3" {
		t.Fatalf("idle connection on node2 reads %q after node1's writes, want ok 1,2,3", got)
	}

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, []string{"handoff", "-config", nodes[0].Config, "shop.db", "node2"}, &stdout, &stderr); err != nil {
		t.Fatalf("handoff: %v\n%s\nnode1:\n%s\nnode2:\n%s", err, stderr.String(), nodes[0].output, nodes[1].output)
	}
	waitFor("node2 never wrote after the handoff while the idle connection was open", func() bool {
		out, err := sqlite(nodes[1], "INSERT INTO t VALUES (4);")
		if err != nil {
			t.Logf("write on node2: %v %s", err, out)
		}
		return err == nil
	})
	if got := app.query(t, "SELECT group_concat(x) FROM t"); got != "ok 1,2,3,4" {
		t.Fatalf("idle connection on node2 reads %q after node2's write, want ok 1,2,3,4", got)
	}
	if out, err := sqlite(nodes[1], "PRAGMA integrity_check"); err != nil || out != "ok" {
		t.Fatalf("integrity check on node2: %q (%v)", out, err)
	}
}
