package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestE2ERejoinAfterDivergenceSetsAside reproduces split brain on rejoin.
// node1 writes shop.db and is killed before it uploads anything; node2
// takes the lease over and writes its own history into the bucket. node1
// comes back with a longer local history than the bucket's and is handed
// the lease. It must not write on its own history: it sets its copy aside
// in lost+found, restores the bucket's, and its writes then continue
// node2's history and reach the bucket.
func TestE2ERejoinAfterDivergenceSetsAside(t *testing.T) {
	// node1 never uploads in its first life.
	c := startRaftClusterWith(t, 3, "1s", func(i int) (string, string) {
		if i == 0 {
			return "", "  upload-interval: 1h\n"
		}
		return "", ""
	})
	nodes, waitFor := c.nodes, c.waitFor
	sqlite := func(m *testMount, sql string) (string, error) {
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", m.Path("shop.db"), sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	if out, err := sqlite(nodes[0], "CREATE TABLE t(x); INSERT INTO t VALUES ('n1-a'); INSERT INTO t VALUES ('n1-b'); INSERT INTO t VALUES ('n1-c'); INSERT INTO t VALUES ('n1-d');"); err != nil {
		t.Fatalf("write on node1: %v %s", err, out)
	}
	_ = nodes[0].cmd.Process.Kill()
	<-nodes[0].done
	_ = syscall.Unmount(nodes[0].Dir, syscall.MNT_DETACH)

	waitFor("node2 never took the lease over", func() bool {
		out, err := sqlite(nodes[1], "CREATE TABLE t(x); INSERT INTO t VALUES ('n2-a');")
		if err != nil {
			t.Logf("write on node2: %v %s", err, out)
		}
		return err == nil
	})
	waitFor("node2's history never reached the bucket", func() bool {
		rep, err := clusterStatus(nodes[1])
		return err == nil && lagIsZeroReport(rep, "shop.db")
	})
	bucketBefore := bucketTXID(nodes[1], "shop.db")

	// node1 comes back, now uploading, and is handed the lease.
	cfg, err := os.ReadFile(nodes[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodes[0].Config, bytes.Replace(cfg, []byte("upload-interval: 1h"), []byte("upload-interval: 100ms"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes[0].restart(t)
	waitFor("node1 never rejoined", func() bool {
		rep, err := clusterStatus(nodes[0])
		return err == nil && rep.Leader != ""
	})
	var stdout, stderr bytes.Buffer
	waitFor("handoff to node1 never succeeded", func() bool {
		stdout.Reset()
		stderr.Reset()
		err := run(context.Background(), []string{"handoff", "-config", nodes[1].Config, "shop.db", "node1"}, &stdout, &stderr)
		if err != nil {
			t.Logf("handoff: %v %s", err, stderr.String())
		}
		return err == nil
	})
	waitFor("node1 never wrote after the handoff", func() bool {
		out, err := sqlite(nodes[0], "INSERT INTO t VALUES ('n1-after');")
		if err != nil {
			t.Logf("write on node1: %v %s", err, out)
		}
		return err == nil
	})

	out, err := sqlite(nodes[0], "SELECT group_concat(x) FROM t")
	if err != nil || out != "n2-a,n1-after" {
		t.Fatalf("node1 reads %q (%v), want node2's history and its own new row, n2-a,n1-after\nnode1:\n%s", out, err, nodes[0].output)
	}
	waitFor("node1's write never reached the bucket", func() bool {
		return bucketTXID(nodes[0], "shop.db") > bucketBefore
	})

	// The diverged copy is kept where status says, with node1's old rows.
	rep, err := clusterStatus(nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	var aside string
	for _, d := range rep.Databases {
		if d.Name == "shop.db" {
			aside = d.SetAside
		}
	}
	if aside == "" {
		t.Fatalf("status does not point to the set-aside copy: %+v", rep.Databases)
	}
	old, err := exec.Command("sqlite3", filepath.Join(aside, "shop.db"), "SELECT group_concat(x) FROM t").CombinedOutput()
	if err != nil || strings.TrimSpace(string(old)) != "n1-a,n1-b,n1-c,n1-d" {
		t.Fatalf("set-aside copy holds %q (%v), want node1's own rows", old, err)
	}
	if ltxs, _ := filepath.Glob(filepath.Join(aside, "ltx", "*.ltx")); len(ltxs) == 0 {
		t.Fatalf("no LTX files set aside in %s", aside)
	}
	if !strings.Contains(nodes[0].output.String(), "diverged") {
		t.Errorf("node1 did not log the divergence:\n%s", nodes[0].output)
	}
	var text bytes.Buffer
	if err := run(context.Background(), []string{"status", "-config", nodes[0].Config}, &text, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), aside) {
		t.Errorf("ferry status does not name %s:\n%s", aside, text.String())
	}
}

// lagIsZeroReport reports whether database name's local copy and the
// bucket agree in rep.
func lagIsZeroReport(rep statusReport, name string) bool {
	for _, d := range rep.Databases {
		if d.Name == name {
			return d.Lag != nil && *d.Lag == 0 && d.Local != nil
		}
	}
	return false
}

// bucketTXID is the bucket's TXID of database name as node m reports it,
// or 0.
func bucketTXID(m *testMount, name string) uint64 {
	rep, err := clusterStatus(m)
	if err != nil {
		return 0
	}
	for _, d := range rep.Databases {
		if d.Name == name && d.Bucket != nil {
			return uint64(d.Bucket.TXID)
		}
	}
	return 0
}
