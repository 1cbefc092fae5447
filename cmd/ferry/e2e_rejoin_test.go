package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hasMember reports whether rep lists node id as a cluster member.
func hasMember(rep statusReport, id string) bool {
	for _, mb := range rep.Members {
		if mb.ID == id {
			return true
		}
	}
	return false
}

// rejoinCluster starts three nodes with a short dead-after and returns
// the cluster, a follower to take out as victim with its node ID, and a
// third node to watch from.
func rejoinCluster(t *testing.T, deadAfter time.Duration) (c *raftCluster, victim *testMount, victimID string, witness *testMount) {
	t.Helper()
	c = startRaftClusterWith(t, 3, "1s", func(int) (string, string) {
		return "    dead-after: " + deadAfter.String() + "\n", ""
	})
	var leader string
	c.waitFor("no leader", func() bool {
		rep, err := clusterStatus(c.nodes[0])
		leader = rep.Leader
		return err == nil && leader != ""
	})
	// Take out a follower, so the leader that removes it stays the same.
	for i, n := range c.nodes {
		id := fmt.Sprintf("node%d", i+1)
		switch {
		case victim == nil && id != leader:
			victim, victimID = n, id
		case witness == nil:
			witness = n
		}
	}
	return c, victim, victimID, witness
}

// assertRejoined waits until victim is a member again with a leader,
// checks that it stays one past dead-after, and runs sql on its database
// db, which must succeed.
func assertRejoined(t *testing.T, c *raftCluster, victim *testMount, victimID string, witness *testMount, deadAfter time.Duration, db, sql string) {
	t.Helper()
	c.waitFor(victimID+" never rejoined with a leader", func() bool {
		wrep, err := clusterStatus(witness)
		if err != nil || !hasMember(wrep, victimID) {
			return false
		}
		vrep, err := clusterStatus(victim)
		return err == nil && vrep.Leader != ""
	})
	// Past dead-after and the leader's next reap, it must still be in.
	for end := time.Now().Add(deadAfter + 2*time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		wrep, err := clusterStatus(witness)
		if err != nil {
			t.Fatalf("status on witness: %v", err)
		}
		if !hasMember(wrep, victimID) {
			t.Fatalf("%s removed again after rejoining: members %+v\nvictim output:\n%s", victimID, wrep.Members, victim.output)
		}
		vrep, err := clusterStatus(victim)
		if err != nil {
			t.Fatalf("status on %s: %v", victimID, err)
		}
		if len(vrep.Members) != 3 || vrep.Leader == "" {
			t.Fatalf("%s sees leader %q, members %+v after rejoining", victimID, vrep.Leader, vrep.Members)
		}
	}
	out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", victim.Path(db), sql).CombinedOutput()
	if err != nil {
		t.Fatalf("write on rejoined %s: %v %s\noutput:\n%s", victimID, err, strings.TrimSpace(string(out)), victim.output)
	}
}

// waitRemoved waits until witness no longer lists victimID as a member.
func waitRemoved(c *raftCluster, witness *testMount, victimID string) {
	c.t.Helper()
	c.waitFor(victimID+" never removed from the cluster", func() bool {
		rep, err := clusterStatus(witness)
		return err == nil && len(rep.Members) == 2 && !hasMember(rep, victimID)
	})
}

// TestE2ERejoinAfterDeadAfter kills a node with -9, waits until the others
// have removed it for being unreachable longer than dead-after, and
// restarts it: it must join again, stay a member well past dead-after, and
// take a write lease.
func TestE2ERejoinAfterDeadAfter(t *testing.T) {
	const deadAfter = 2 * time.Second
	c, victim, victimID, witness := rejoinCluster(t, deadAfter)
	_ = victim.cmd.Process.Kill()
	<-victim.done
	_ = syscall.Unmount(victim.Dir, syscall.MNT_DETACH)
	waitRemoved(c, witness, victimID)

	victim.restart(t)
	assertRejoined(t, c, victim, victimID, witness, deadAfter, "rejoin.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
}

// TestE2ERejoinAfterPause stops a node with SIGSTOP, as a long pause of
// its machine would, until the others have removed it, and lets it go
// on. Its own Raft state still says it is a member, but no leader
// contacts it any more: it must ask to join again by itself, without a
// restart, and then take a write lease.
func TestE2ERejoinAfterPause(t *testing.T) {
	const deadAfter = 2 * time.Second
	c, victim, victimID, witness := rejoinCluster(t, deadAfter)
	if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Let the process go on however the test ends, so it can be stopped.
	t.Cleanup(func() { _ = victim.cmd.Process.Signal(syscall.SIGCONT) })
	waitRemoved(c, witness, victimID)
	if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	assertRejoined(t, c, victim, victimID, witness, deadAfter, "rejoin.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
}
