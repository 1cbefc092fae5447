package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestE2EClusterRefusesNodeWithWrongSecret runs two `ferry mount` nodes of
// one Raft cluster and a third that lists them as peers but holds another
// secret. The third never joins: the cluster refuses it, both sides log
// why, and it does not start a cluster of its own. The status endpoint of
// a member refuses a client holding the third node's secret.
func TestE2EClusterRefusesNodeWithWrongSecret(t *testing.T) {
	addrs := []string{freeAddr(t, "127.0.0.31"), freeAddr(t, "127.0.0.32"), freeAddr(t, "127.0.0.33")}
	c := startRaftClusterAt(t, addrs[:2], addrs, "5s", nil)

	t.Setenv("FERRY_TEST_WRONG_CLUSTER_SECRET", "not-the-cluster-secret")
	peers := `["` + strings.Join(addrs, `", "`) + `"]`
	intruder := startMountWith(t, fmt.Sprintf(`cluster:
  id: ferry-e2e
  secret-env: FERRY_TEST_WRONG_CLUSTER_SECRET
lease:
  type: raft
  node: node3
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
  follow-interval: -1s
`, addrs[2], peers, filepath.Join(t.TempDir(), "bucket")))

	c.waitFor("the intruder's refusal in the logs", func() bool {
		return strings.Contains(intruder.output.String(), "lease cluster refused this node") &&
			strings.Contains(intruder.output.String(), "wrong cluster secret") &&
			(strings.Contains(c.nodes[0].output.String(), "refused peer") || strings.Contains(c.nodes[1].output.String(), "refused peer"))
	})
	for i, n := range c.nodes {
		rep, err := clusterStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Members) != 2 {
			t.Fatalf("node%d sees members %+v, want node1 and node2 only", i+1, rep.Members)
		}
	}
	// The intruder is alone and leaderless: it did not bootstrap.
	rep, err := clusterStatus(intruder)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Leader != "" {
		t.Fatalf("refused node follows leader %q", rep.Leader)
	}

	// A member's endpoint refuses the intruder's credentials.
	var stdout, stderr bytes.Buffer
	sock := "unix:" + filepath.Join(c.nodes[0].DataDir, "ferry.sock")
	err = run(context.Background(), []string{"status", "-addr", sock, "-config", intruder.Config, "-json"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "unauthorized: wrong cluster secret") || stdout.Len() != 0 {
		t.Fatalf("status with the intruder's secret: %v, output %q", err, stdout.String())
	}
	err = run(context.Background(), []string{"handoff", "-addr", sock, "-config", intruder.Config, "x.db", "node3"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("handoff with the intruder's secret: %v", err)
	}
}

// TestE2EMountRefusesBucketOfAnotherCluster starts a node of cluster
// ferry-e2e on a bucket, then a node of another cluster on the same
// bucket: the second refuses to start, saying which cluster the bucket
// belongs to, and the first cluster's history is untouched. On its own
// prefix the other cluster starts.
func TestE2EMountRefusesBucketOfAnotherCluster(t *testing.T) {
	bucket := filepath.Join(t.TempDir(), "bucket")
	bucketLines := fmt.Sprintf("bucket:\n  type: file\n  path: %q\n", bucket)
	first := startMountWith(t, bucketLines)
	if _, err := os.Stat(filepath.Join(bucket, "ferry-cluster.json")); err != nil {
		t.Fatalf("no cluster marker in the bucket: %v", err)
	}
	first.stop(t)

	t.Setenv("FERRY_TEST_OTHER_CLUSTER_SECRET", "other-cluster-secret-0123")
	other := "cluster:\n  id: other-cluster\n  secret-env: FERRY_TEST_OTHER_CLUSTER_SECRET\n"
	m := newTestMount(t, other+bucketLines)
	out, err := runFerry(t, "mount", "-config", m.Config)
	if isMounted(t, m.Dir) {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
	if err == nil || !strings.Contains(out, `records cluster "ferry-e2e", and this node is in cluster "other-cluster"`) {
		t.Fatalf("mount of another cluster's bucket: %v\n%s", err, out)
	}

	startMountWith(t, other+bucketLines+"  prefix: other\n")
	if _, err := os.Stat(filepath.Join(bucket, "other", "ferry-cluster.json")); err != nil {
		t.Fatalf("no cluster marker under the other prefix: %v", err)
	}
}
