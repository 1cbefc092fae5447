package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// readerShellProgram runs statements on a database in whatever journal
// mode it is in, printing their rows: a transaction it opens keeps its
// locks until it ends.
const readerShellProgram = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0.2)
for line in sys.stdin:
    try:
        rows = db.execute(line).fetchall()
        print("ok " + ",".join(str(v) for r in rows for v in r), flush=True)
    except sqlite3.Error as e:
        print("error: %s" % e, flush=True)
`

// dbLag returns what node m's status says of database name's lag behind
// its holder; ok is false while it does not know both numbers.
func dbLag(m *testMount, name string) (txids int64, seconds float64, ok bool) {
	rep, err := clusterStatus(m)
	if err != nil {
		return 0, 0, false
	}
	for _, d := range rep.Databases {
		if d.Name == name && d.LagTXIDs != nil && d.LagSeconds != nil {
			return *d.LagTXIDs, *d.LagSeconds, true
		}
	}
	return 0, 0, false
}

// TestE2EStatusShowsReplicaLag holds a read transaction open on a replica
// of a rollback-journal database, which keeps the replica from applying
// the holder's next commits. Meanwhile the replica's status shows it
// behind in transactions and in seconds of the holder's commit times;
// once the reader ends and the replica catches up, both are 0. The
// holder's own lag is always 0.
func TestE2EStatusShowsReplicaLag(t *testing.T) {
	addrs := []string{freeAddr(t, "127.0.0.34"), freeAddr(t, "127.0.0.35")}
	c := startRaftClusterAt(t, addrs, addrs, "5s", func(i int) (string, string) {
		return "", "  upload-interval: 100ms\n  follow-interval: 100ms\n"
	})
	holder, replica := c.nodes[0], c.nodes[1]
	sqlite := func(m *testMount, sql string) string {
		t.Helper()
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", m.Path("lag.db"), sql).CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3 %q: %v %s", sql, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	uploaded := func() bool {
		rep, err := clusterStatus(holder)
		return err == nil && lagIsZeroReport(rep, "lag.db")
	}

	sqlite(holder, "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
	c.waitFor("the holder never uploaded lag.db", uploaded)
	if got := sqlite(replica, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("replica has %s rows, want 1", got)
	}
	// One commit the replica applies, so that its newest change set is
	// one the holder wrote rather than the snapshot it restored.
	sqlite(holder, "INSERT INTO t VALUES (2);")
	c.waitFor("the replica never caught up", func() bool {
		tx, sec, ok := dbLag(replica, "lag.db")
		return ok && tx == 0 && sec == 0 && sqlite(replica, "SELECT count(*) FROM t") == "2"
	})

	reader := startPythonShell(t, readerShellProgram, replica.Path("lag.db"))
	if got := reader.exec(t, "BEGIN"); got != "ok " {
		t.Fatalf("BEGIN: %q", got)
	}
	if got := reader.exec(t, "SELECT count(*) FROM t"); got != "ok 2" {
		t.Fatalf("reader sees %q, want 2 rows", got)
	}
	// Commit times are in milliseconds: this keeps the next commit's
	// from sharing one with the replica's newest.
	time.Sleep(20 * time.Millisecond)
	sqlite(holder, "INSERT INTO t VALUES (3); INSERT INTO t VALUES (4);")
	c.waitFor("the holder never uploaded its new commits", uploaded)
	c.waitFor("the replica's status never showed it behind", func() bool {
		tx, sec, ok := dbLag(replica, "lag.db")
		if ok {
			t.Logf("replica lag: %d tx, %.3f s", tx, sec)
		}
		return ok && tx == 2 && sec > 0
	})
	if tx, sec, ok := dbLag(holder, "lag.db"); !ok || tx != 0 || sec != 0 {
		t.Fatalf("holder's lag: %d tx, %v s (known %v), want 0", tx, sec, ok)
	}

	if got := reader.exec(t, "ROLLBACK"); got != "ok " {
		t.Fatalf("ROLLBACK: %q", got)
	}
	c.waitFor("the replica never caught up after the reader ended", func() bool {
		tx, sec, ok := dbLag(replica, "lag.db")
		return ok && tx == 0 && sec == 0
	})
	if got := sqlite(replica, "SELECT count(*) FROM t"); got != "4" {
		t.Fatalf("replica has %s rows, want 4", got)
	}
}
