package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestE2EFollowerStatusShowsDeadMember kills a member of a three-node
// cluster with SIGKILL; `ferry status` on the surviving follower, not
// only on the leader, must show it unreachable.
func TestE2EFollowerStatusShowsDeadMember(t *testing.T) {
	c := startRaftCluster(t, 3, "1s")
	rep, err := clusterStatus(c.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	var follower, victim *testMount
	var victimID string
	for i, m := range c.nodes {
		id := "node" + string(rune('1'+i))
		switch {
		case id == rep.Leader:
		case victim == nil:
			victim, victimID = m, id
		default:
			follower = m
		}
	}
	if victim == nil || follower == nil {
		t.Fatalf("leader %q is not one of the nodes", rep.Leader)
	}
	killAndExpectExit(t, victim)

	var text string
	c.waitFor("the follower's `ferry status` never showed the killed member unreachable", func() bool {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"status", "-config", follower.Config}, &stdout, &stderr); err != nil {
			t.Logf("status: %v %s", err, stderr.String())
			return false
		}
		text = stdout.String()
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[0] == victimID {
				return f[len(f)-1] == "unreachable"
			}
		}
		return false
	})
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		member := len(f) == 6 && (f[1] == "leader" || f[1] == "follower" || f[1] == "nonvoter")
		if member && f[0] != victimID && f[5] != "ok" {
			t.Fatalf("a live member is not shown ok:\n%s", text)
		}
	}
}
