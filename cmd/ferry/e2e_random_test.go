package main

import (
	"database/sql"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// TestE2ERandomTransactions runs thousands of random transactions through
// the Go driver in each journal mode, and in one database that switches
// between all of them, then requires the LTX log to replay onto an empty
// file into exactly the database, with one change set per commit.
func TestE2ERandomTransactions(t *testing.T) {
	m := startMount(t)
	const (
		txns  = 2000
		limit = 75 * time.Second // per database, so a slow mount still ends
	)
	for i, mode := range append(append([]string{}, journalModes...), "SWITCH") {
		t.Run(mode, func(t *testing.T) {
			name := "random/" + strings.ToLower(mode) + ".db"
			if err := os.MkdirAll(m.Path("random"), 0o755); err != nil {
				t.Fatalf("mkdir in mount: %v", err)
			}
			path := m.Path(name)
			initial := mode
			if mode == "SWITCH" {
				initial = "DELETE"
			}

			// Set up in a connection of its own, so that the position the
			// random transactions start from is settled before they run.
			db := openGoDB(t, path)
			mustExec(t, db, "PRAGMA auto_vacuum=INCREMENTAL")
			mustExec(t, db, "PRAGMA journal_mode="+initial)
			mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
			mustExec(t, db, "CREATE INDEX t_len ON t (length(v))")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			base := replayLTXLog(t, m, name).MaxTXID

			db = openGoDB(t, path)
			defer db.Close()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			r := randomTxRunner{t: t, db: db, rng: rng}
			deadline := time.Now().Add(limit)
			commits, rollbacks := 0, 0
			for n := 0; n < txns && time.Now().Before(deadline); n++ {
				if mode == "SWITCH" && n%250 == 249 {
					next := journalModes[(n/250)%len(journalModes)]
					if next != initial && (next == "WAL" || initial == "WAL") {
						// Leaving or entering WAL rewrites the header: a commit.
						commits++
					}
					mustExec(t, db, "PRAGMA journal_mode="+next)
					initial = next
				}
				if r.transaction() {
					commits++
				} else {
					rollbacks++
				}
				if initial == "WAL" && n%97 == 0 {
					mode := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}[rng.IntN(4)]
					mustExec(t, db, "PRAGMA wal_checkpoint("+mode+")")
				}
			}
			if initial == "WAL" {
				mustExec(t, db, "PRAGMA wal_checkpoint(TRUNCATE)")
			}
			var check string
			if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
				t.Fatalf("integrity_check: %q, %v", check, err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			res := checkReplay(t, m, name)
			t.Logf("%s: %d commits, %d rollbacks; %d LTX files up to TXID %d; %d pages of %d bytes",
				name, commits, rollbacks, res.Files, res.MaxTXID, len(res.Image)/int(res.PageSize), res.PageSize)
			if got := int(res.MaxTXID - base); got != commits {
				t.Fatalf("LTX log went from TXID %d to %d: %d change sets for %d commits", base, res.MaxTXID, got, commits)
			}
		})
	}
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) sql.Result {
	t.Helper()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}

// randomTxRunner runs random write transactions against table t.
type randomTxRunner struct {
	t     *testing.T
	db    *sql.DB
	rng   *rand.Rand
	maxID int64
}

// transaction runs one transaction of one to eight random statements, and
// commits it, or one time in ten rolls it back. Every committed transaction
// inserts at least one row, so that each is a real change that Ferry must
// capture. It reports whether it committed.
func (r *randomTxRunner) transaction() bool {
	t := r.t
	tx, err := r.db.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	exec := func(q string, args ...any) sql.Result {
		res, err := tx.Exec(q, args...)
		if err != nil {
			_ = tx.Rollback()
			t.Fatalf("%s: %v", q, err)
		}
		return res
	}
	r.insert(exec)
	for ops := r.rng.IntN(8); ops > 0; ops-- {
		switch k := r.rng.IntN(20); {
		case k < 8:
			r.insert(exec)
		case k < 13:
			exec("UPDATE t SET v = ? WHERE id = (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT 1)",
				r.blob(), r.rng.Int64N(r.maxID+1))
		case k < 18:
			exec("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE id >= ? ORDER BY id LIMIT ?)",
				r.rng.Int64N(r.maxID+1), 1+r.rng.IntN(5))
		case k < 19:
			// Drop a third of the table and hand the free pages back, so
			// that the database shrinks as well as grows.
			exec("DELETE FROM t WHERE id % 3 = ?", r.rng.IntN(3))
			exec("PRAGMA incremental_vacuum")
		default:
			exec("UPDATE t SET v = substr(v, 1, length(v) / 2) WHERE id % 5 = ? AND length(v) > 1", r.rng.IntN(5))
		}
	}
	// Keep the database within a few megabytes.
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		_ = tx.Rollback()
		t.Fatalf("count: %v", err)
	}
	if n > 1500 {
		exec("DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 750)")
	}
	if r.rng.IntN(10) == 0 {
		if err := tx.Rollback(); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		return false
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return true
}

func (r *randomTxRunner) insert(exec func(string, ...any) sql.Result) {
	res := exec("INSERT INTO t (v) VALUES (?)", r.blob())
	if id, err := res.LastInsertId(); err == nil && id > r.maxID {
		r.maxID = id
	}
}

// blob returns random bytes of a random size: mostly small rows, some that
// fill a few pages, and now and then one that spans dozens of pages.
func (r *randomTxRunner) blob() []byte {
	var n int
	switch k := r.rng.IntN(100); {
	case k < 85:
		n = 1 + r.rng.IntN(400)
	case k < 98:
		n = 1000 + r.rng.IntN(12000)
	default:
		n = 50_000 + r.rng.IntN(150_000)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.rng.Uint32())
	}
	return b
}
