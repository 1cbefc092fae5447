package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// journalModes are the journal modes in which Ferry must capture commits.
var journalModes = []string{"DELETE", "TRUNCATE", "PERSIST", "WAL"}

// runSQLiteCLI runs script through the sqlite3 command-line shell against
// db and returns what it printed. -bail makes the first error fatal, so a
// failing statement cannot go unnoticed.
func runSQLiteCLI(t *testing.T, db, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sqlite3", "-bail", "-batch", db)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return strings.TrimSpace(string(out))
}

// runPython runs a Python program with args and returns what it printed.
func runPython(t *testing.T, program string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", append([]string{"-c", program}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// openGoDB opens path with the Go driver on a single connection.
func openGoDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

// integrityCheck runs PRAGMA integrity_check through the Go driver.
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db := openGoDB(t, path)
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check %s: %v", path, err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check %s: %s", path, res)
	}
}

// TestE2ESQLiteCLI creates a database with the sqlite3 shell in each journal
// mode, some of them in subdirectories, reads it back with Python and the Go
// driver, and replays its LTX log.
func TestE2ESQLiteCLI(t *testing.T) {
	m := startMount(t)
	for i, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			name := fmt.Sprintf("cli-%s.db", strings.ToLower(mode))
			if i%2 == 1 {
				name = fmt.Sprintf("tenant-%d/2026/cli-%s.db", i, strings.ToLower(mode))
				if err := os.MkdirAll(filepath.Dir(m.Path(name)), 0o755); err != nil {
					t.Fatalf("mkdir in mount: %v", err)
				}
			}
			path := m.Path(name)
			var script strings.Builder
			fmt.Fprintf(&script, "PRAGMA journal_mode=%s;\n", mode)
			script.WriteString("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);\n")
			for j := 0; j < 50; j++ {
				fmt.Fprintf(&script, "INSERT INTO t (v) VALUES ('row %d');\n", j)
			}
			// One transaction spanning hundreds of pages.
			script.WriteString("BEGIN;\nWITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 500)\n" +
				"INSERT INTO t (v, b) SELECT 'big ' || x, randomblob(3000) FROM n;\nCOMMIT;\n")
			script.WriteString("UPDATE t SET v = v || '!' WHERE id % 7 = 0;\n")
			script.WriteString("DELETE FROM t WHERE id % 11 = 0;\n")
			script.WriteString("BEGIN; DELETE FROM t; ROLLBACK;\n")
			if mode == "WAL" {
				script.WriteString("PRAGMA wal_checkpoint(TRUNCATE);\n")
			}
			script.WriteString("SELECT count(*) FROM t;\n")
			out := runSQLiteCLI(t, path, script.String())
			want := fmt.Sprint(550 - 550/11)
			if lines := strings.Split(out, "\n"); lines[len(lines)-1] != want {
				t.Fatalf("sqlite3 printed %q; want the count %s last", out, want)
			}

			got := runPython(t, `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("PRAGMA journal_mode").fetchone()[0], db.execute("SELECT count(*) FROM t").fetchone()[0],
      db.execute("SELECT count(*) FROM t WHERE v LIKE '%!'").fetchone()[0])
db.close()
`, path)
			wantMode := "delete" // the shell's mode does not persist, except WAL's
			if mode == "WAL" {
				wantMode = "wal"
			}
			if want := fmt.Sprintf("%s %d %d", wantMode, 500, 550/7-550/77); got != want {
				t.Fatalf("python3 read %q; want %q", got, want)
			}
			integrityCheck(t, path)
			res := checkReplay(t, m, name)
			t.Logf("%s: %d LTX files up to TXID %d", name, res.Files, res.MaxTXID)
		})
	}
}

// TestE2EPython writes databases with Python's sqlite3 module in each
// journal mode and checks them with the sqlite3 shell and the LTX log.
func TestE2EPython(t *testing.T) {
	m := startMount(t)
	if err := os.MkdirAll(m.Path("py/nested"), 0o755); err != nil {
		t.Fatalf("mkdir in mount: %v", err)
	}
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			name := "py/nested/" + strings.ToLower(mode) + ".sqlite"
			path := m.Path(name)
			got := runPython(t, `
import sqlite3, sys, os
path, mode = sys.argv[1], sys.argv[2]
db = sqlite3.connect(path, isolation_level=None)
print(db.execute("PRAGMA journal_mode=" + mode).fetchone()[0])
db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)")
for i in range(200):
    db.execute("BEGIN")
    db.execute("INSERT INTO kv VALUES (?, ?)", ("k%d" % i, os.urandom(i * 37 % 5000)))
    if i % 10 == 9:
        db.execute("DELETE FROM kv WHERE k = ?", ("k%d" % (i - 5),))
    db.execute("COMMIT")
db.execute("BEGIN")
db.executemany("INSERT INTO kv VALUES (?, ?)", [("bulk%d" % i, os.urandom(2000)) for i in range(300)])
db.execute("COMMIT")
if mode == "WAL":
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(db.execute("SELECT count(*) FROM kv").fetchone()[0])
db.close()
`, path, mode)
			if want := fmt.Sprintf("%s\n%d", strings.ToLower(mode), 200-20+300); got != want {
				t.Fatalf("python3 printed %q; want %q", got, want)
			}
			if out := runSQLiteCLI(t, path, "PRAGMA integrity_check;\nSELECT count(*) FROM kv;\n"); out != "ok\n480" {
				t.Fatalf("sqlite3 printed %q; want ok and 480 rows", out)
			}
			checkReplay(t, m, name)
		})
	}
}

// TestE2ETwoWriters has a Python process and a sqlite3 shell write one
// database at the same time, in each journal mode. SQLite's locks, taken
// through the mount, must serialize them: every committed row is there and
// the database passes integrity_check.
func TestE2ETwoWriters(t *testing.T) {
	m := startMount(t)
	const rows = 150
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			name := "writers-" + strings.ToLower(mode) + ".db"
			path := m.Path(name)
			runSQLiteCLI(t, path, fmt.Sprintf("PRAGMA journal_mode=%s;\nCREATE TABLE w (writer TEXT, seq INTEGER, pad BLOB, PRIMARY KEY (writer, seq));\n", mode))

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			py := exec.CommandContext(ctx, "python3", "-c", `
import sqlite3, sys, os
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
for i in range(int(sys.argv[2])):
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO w VALUES ('py', ?, ?)", (i, os.urandom(500 + i * 13 % 3000)))
    db.execute("COMMIT")
db.close()
`, path, fmt.Sprint(rows))
			var script strings.Builder
			script.WriteString(".timeout 30000\n")
			for i := 0; i < rows; i++ {
				fmt.Fprintf(&script, "BEGIN IMMEDIATE; INSERT INTO w VALUES ('cli', %d, randomblob(%d)); COMMIT;\n", i, 400+i*29%4000)
			}
			cli := exec.CommandContext(ctx, "sqlite3", "-bail", "-batch", path)
			cli.Stdin = strings.NewReader(script.String())

			var pyOut, cliOut strings.Builder
			py.Stdout, py.Stderr = &pyOut, &pyOut
			cli.Stdout, cli.Stderr = &cliOut, &cliOut
			if err := py.Start(); err != nil {
				t.Fatal(err)
			}
			if err := cli.Start(); err != nil {
				t.Fatal(err)
			}
			pyErr, cliErr := py.Wait(), cli.Wait()
			if pyErr != nil || cliErr != nil {
				t.Fatalf("writers failed: python3: %v %s; sqlite3: %v %s", pyErr, pyOut.String(), cliErr, cliOut.String())
			}

			check := "PRAGMA integrity_check;\nSELECT writer, count(*), min(seq), max(seq) FROM w GROUP BY writer ORDER BY writer;\n"
			if mode == "WAL" {
				check += "PRAGMA wal_checkpoint(TRUNCATE);\n"
			}
			out := runSQLiteCLI(t, path, check)
			want := fmt.Sprintf("ok\ncli|%d|0|%d\npy|%d|0|%d", rows, rows-1, rows, rows-1)
			if mode == "WAL" {
				want += "\n0|0|0"
			}
			if out != want {
				t.Fatalf("after two writers sqlite3 printed\n%s\nwant\n%s", out, want)
			}
			res := checkReplay(t, m, name)
			// Two setup transactions at most (WAL mode, the table), then one
			// change set per row.
			if res.MaxTXID < 2*rows+1 || res.MaxTXID > 2*rows+2 {
				t.Fatalf("LTX log ends at TXID %d after %d commits", res.MaxTXID, 2*rows)
			}
		})
	}
}
