package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// garbageDB returns size bytes that start with SQLite's header but whose
// page size field says 9007, which no SQLite page size is.
func garbageDB(size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(b[16:18], 9007)
	return b
}

// statusJSON runs `ferry status -json` against m.
func statusJSON(t *testing.T, m *testMount) statusReport {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"status", "-config", m.Config, "-json"}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry status -json: %v\n%s", err, stderr.String())
	}
	var rep statusReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("ferry status -json printed no JSON: %v\n%s", err, stdout.String())
	}
	return rep
}

// statusText runs `ferry status` against m.
func statusText(t *testing.T, m *testMount) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"status", "-config", m.Config}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry status: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// dbStatusOf returns name's line of the report.
func dbStatusOf(rep statusReport, name string) (dbStatus, bool) {
	for _, d := range rep.Databases {
		if d.Name == name {
			return d, true
		}
	}
	return dbStatus{}, false
}

// TestE2EQuarantine starts a mount whose data tree holds a good database
// and a file with SQLite's header and an impossible page size. The mount
// must start, serve the good database, leave the bad file byte for byte as
// it was, refuse writes to it, and name it in `ferry status` with the
// reason.
func TestE2EQuarantine(t *testing.T) {
	m := newTestMount(t, "")
	tree := filepath.Join(m.DataDir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	runSQLiteCLI(t, filepath.Join(tree, "good.db"), "CREATE TABLE t(v); INSERT INTO t VALUES ('before');")
	// One file holds several pages of the bogus size, the other less than
	// one.
	garbage := map[string][]byte{"garbage.db": garbageDB(64 << 10), "sub/garbage.db": garbageDB(8 << 10)}
	for name, b := range garbage {
		if err := os.WriteFile(m.TreePath(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.start(t)

	// The good database reads and writes.
	if got := runSQLiteCLI(t, m.Path("good.db"), "SELECT v FROM t;"); got != "before" {
		t.Fatalf("good.db reads %q, want %q", got, "before")
	}
	runSQLiteCLI(t, m.Path("good.db"), "INSERT INTO t VALUES ('after');")
	if got := runSQLiteCLI(t, m.Path("good.db"), "SELECT count(*) FROM t;"); got != "2" {
		t.Fatalf("good.db has %s rows after a write, want 2", got)
	}

	// The garbage reads through the mount as it is, and writes to it fail.
	for name, b := range garbage {
		if got, err := os.ReadFile(m.Path(name)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s through the mount: %d bytes, err %v; want the %d bytes as written", name, len(got), err, len(b))
		}
		f, err := os.OpenFile(m.Path(name), os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("open %s for writing: %v", name, err)
		}
		_, werr := f.WriteAt([]byte("overwritten"), 200)
		f.Close()
		if werr == nil {
			t.Errorf("a write to the quarantined %s succeeded", name)
		}
		out, err := exec.Command("sqlite3", m.Path(name), "CREATE TABLE x(y);").CombinedOutput()
		if err == nil {
			t.Errorf("sqlite3 wrote to the quarantined %s: %s", name, out)
		}
	}

	// Status names both bad files, with the reason, in text and JSON.
	rep := statusJSON(t, m)
	for _, name := range []string{"garbage.db", "sub/garbage.db"} {
		d, ok := dbStatusOf(rep, name)
		if !ok {
			t.Fatalf("ferry status -json does not list %s: %+v", name, rep.Databases)
		}
		if d.State != "quarantined" || !strings.Contains(d.Reason, "page size 9007") {
			t.Errorf("%s: state %q, reason %q; want quarantined because of page size 9007", name, d.State, d.Reason)
		}
	}
	if d, ok := dbStatusOf(rep, "good.db"); !ok || d.State != "" || d.Local == nil {
		t.Errorf("good.db in status: %+v, listed %v; want a position and no state", d, ok)
	}
	text := statusText(t, m)
	t.Logf("ferry status:\n%s", text)
	for _, want := range []string{"garbage.db", "sub/garbage.db", "quarantined", "page size 9007"} {
		if !strings.Contains(text, want) {
			t.Errorf("ferry status lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(m.output.String(), "quarantined") {
		t.Errorf("the mount did not log the quarantine:\n%s", m.output)
	}
	m.stop(t)

	// Nothing touched the bad files, and nothing was made of them.
	for name, b := range garbage {
		if got, err := os.ReadFile(m.TreePath(name)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s changed on disk (%d bytes, err %v)", name, len(got), err)
		}
		for _, dir := range []string{m.LTXDir(name), filepath.Join(m.DataDir, "bucket", filepath.FromSlash(name))} {
			if ents, err := os.ReadDir(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s has %s (%d entries, err %v); want none", name, dir, len(ents), err)
			}
		}
	}
}
