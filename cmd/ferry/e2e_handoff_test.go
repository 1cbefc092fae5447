package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sqlShell is a Python process that keeps one SQLite connection open and
// runs each statement it is sent, answering "ok" or "error: ...".
type sqlShell struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

const sqlShellProgram = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0.2)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
for line in sys.stdin:
    try:
        db.execute(line)
        print("ok", flush=True)
    except sqlite3.Error as e:
        print("error: %s" % e, flush=True)
`

func startSQLShell(t *testing.T, path string) *sqlShell {
	t.Helper()
	return startPythonShell(t, sqlShellProgram, path)
}

// startPythonShell runs program, a Python loop over statements read from
// stdin, on the database at path, and stops it when the test ends.
func startPythonShell(t *testing.T, program, path string) *sqlShell {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, "python3", "-c", program, path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sqlShell{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
		cancel()
	})
	return s
}

// exec runs one statement and returns the shell's answer.
func (s *sqlShell) exec(t *testing.T, stmt string) string {
	t.Helper()
	if _, err := fmt.Fprintln(s.in, stmt); err != nil {
		t.Fatal(err)
	}
	if !s.out.Scan() {
		t.Fatalf("sql shell ended: %v", s.out.Err())
	}
	return s.out.Text()
}

// TestE2EHandoffFencesWALWriter hands a database's lease from node1 to
// node2 while an application on node1 keeps a WAL-mode connection open.
// That connection's WAL is written past Ferry (passthrough), so node1
// fences it before it lets the lease go: its next write fails without
// changing anything, and node2 carries on from node1's last commit.
func TestE2EHandoffFencesWALWriter(t *testing.T) {
	c := startRaftCluster(t, 2, "2s")
	nodes, waitFor := c.nodes, c.waitFor

	app := startSQLShell(t, nodes[0].Path("shop.db"))
	for _, stmt := range []string{"CREATE TABLE t(x)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"} {
		if got := app.exec(t, stmt); got != "ok" {
			t.Fatalf("%s on node1: %s", stmt, got)
		}
	}
	posPath := filepath.Join(nodes[0].Dir, ".ferry", "pos", "shop.db")
	before, err := os.ReadFile(posPath)
	if err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"handoff", "-config", nodes[0].Config, "shop.db", "node2"}, &stdout, &stderr); err != nil {
		t.Fatalf("handoff: %v\n%s\nnode1:\n%s", err, stderr.String(), nodes[0].output)
	}
	got := app.exec(t, "INSERT INTO t VALUES (3)")
	if !strings.Contains(got, "locked") {
		t.Fatalf("write on node1 after handing the lease off: %q, want the database locked", got)
	}
	after, err := os.ReadFile(posPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("node1's position moved after the handoff: %s -> %s", before, after)
	}

	sqlite := func(sql string) (string, error) {
		out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", nodes[1].Path("shop.db"), sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	waitFor("node2 never wrote after the handoff", func() bool {
		out, err := sqlite("INSERT INTO t VALUES (4);")
		if err != nil {
			t.Logf("write on node2: %v %s", err, out)
		}
		return err == nil
	})
	if out, err := sqlite("SELECT group_concat(x) FROM t"); err != nil || out != "1,2,4" {
		t.Fatalf("node2 has rows %q (%v), want 1,2,4", out, err)
	}
}
