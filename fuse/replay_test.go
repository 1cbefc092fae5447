package fuse_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// randomTransactions runs n random write transactions: inserts of small
// and large (overflow) rows, updates, deletes, multi-statement transactions,
// rollbacks, and now and then a VACUUM or a checkpoint.
func randomTransactions(t *testing.T, db *sql.DB, rng *rand.Rand, n int, wal bool) {
	t.Helper()
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
	mustExec(t, db, "CREATE INDEX IF NOT EXISTS t_k ON t (k)")
	blob := func() []byte {
		size := rng.Intn(200)
		if rng.Intn(10) == 0 {
			size = rng.Intn(20000)
		}
		b := make([]byte, size)
		rng.Read(b)
		return b
	}
	checkpoints := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	for i := 0; i < n; i++ {
		switch r := rng.Intn(100); {
		case r < 50:
			mustExec(t, db, "INSERT INTO t (k, v) VALUES (?, ?)", rng.Intn(1000), blob())
		case r < 65:
			mustExec(t, db, "UPDATE t SET v = ? WHERE k = ?", blob(), rng.Intn(1000))
		case r < 75:
			mustExec(t, db, "DELETE FROM t WHERE k BETWEEN ? AND ?", rng.Intn(1000), rng.Intn(1000))
		case r < 88:
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 1+rng.Intn(20); j++ {
				if _, err := tx.Exec("INSERT INTO t (k, v) VALUES (?, ?)", rng.Intn(1000), blob()); err != nil {
					t.Fatal(err)
				}
			}
			if rng.Intn(4) == 0 {
				err = tx.Rollback()
			} else {
				err = tx.Commit()
			}
			if err != nil {
				t.Fatal(err)
			}
		case r < 90:
			mustExec(t, db, "VACUUM")
		case r < 95 && wal:
			mustExec(t, db, "PRAGMA wal_checkpoint("+checkpoints[rng.Intn(len(checkpoints))]+")")
		default:
			mustExec(t, db, "DELETE FROM t WHERE id % 3 = 0")
		}
	}
}

// replayLog applies every LTX file of name, in order, to an empty file
// and returns its content.
func replayLog(t *testing.T, layout ferry.Layout, name string) []byte {
	t.Helper()
	ents, err := os.ReadDir(layout.LTXDir(name))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range ents {
		if _, _, err := ferry.ParseLTXFilename(e.Name()); err == nil {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	out, err := os.Create(filepath.Join(t.TempDir(), "replay.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var prev ltx.Checksum
	next := ltx.TXID(1)
	for i, file := range files {
		f, err := os.Open(filepath.Join(layout.LTXDir(name), file))
		if err != nil {
			t.Fatal(err)
		}
		// Apply by hand rather than with ltx.Apply, which checks the
		// pre-apply checksum with the new page size and so cannot follow
		// a change of page size.
		dec := ltx.NewDecoder(f)
		if err := dec.DecodeHeader(); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		hdr := dec.Header()
		if hdr.MinTXID != next {
			t.Fatalf("file %s follows TXID %d", file, next-1)
		}
		next = hdr.MaxTXID + 1
		data := make([]byte, hdr.PageSize)
		for {
			var ph ltx.PageHeader
			if err := dec.DecodePage(&ph, data); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if _, err := out.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
				t.Fatal(err)
			}
		}
		if err := dec.Close(); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		f.Close()
		if err := out.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 || i == len(files)-1 {
			sum, err := ltx.ChecksumDatabaseFile(out, int64(hdr.Commit)*int64(hdr.PageSize), hdr.PageSize)
			if err != nil {
				t.Fatal(err)
			}
			if sum != dec.Trailer().PostApplyChecksum {
				t.Fatalf("%s: replayed checksum %s, file says %s", file, sum, dec.Trailer().PostApplyChecksum)
			}
		}
		if i > 0 && hdr.PreApplyChecksum != prev {
			t.Fatalf("%s: pre-apply checksum %s, previous post-apply %s", file, hdr.PreApplyChecksum, prev)
		}
		prev = dec.Trailer().PostApplyChecksum
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkReplay compares the database with its replayed log and its
// checksum with one computed from scratch.
func checkReplay(t *testing.T, m *testMount, name string) {
	t.Helper()
	// Change sets reach the LTX log in groups, shortly after the commit.
	if err := m.store.DB(name).Sync(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(m.layout.DBPath(name))
	if err != nil {
		t.Fatal(err)
	}
	got := replayLog(t, m.layout, name)
	if !bytes.Equal(got, want) {
		t.Fatalf("replayed log (%d bytes) differs from the database (%d bytes)", len(got), len(want))
	}
	pos, err := m.store.Pos(name)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := uint32(want[16])<<8 | uint32(want[17])
	if pageSize == 1 {
		pageSize = 65536
	}
	sum, err := ltx.ChecksumDatabaseFile(bytes.NewReader(want), int64(len(want)), pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if sum != pos.PostApplyChecksum {
		t.Fatalf("checksum from scratch %s, position %s", sum, pos.PostApplyChecksum)
	}
	if err := m.store.Verify(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

func TestReplayRandomTransactions(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	for _, tc := range []struct{ mode, sync string }{
		{"delete", "full"},
		{"truncate", "normal"},
		{"persist", "full"},
		{"wal", "normal"},
		{"wal", "full"},
	} {
		t.Run(tc.mode+"-"+tc.sync, func(t *testing.T) {
			m := mount(t, t.TempDir(), nil)
			name := fmt.Sprintf("dir/%s.db", tc.mode)
			if err := os.MkdirAll(m.path("dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			db := openDB(t, m.path(name), tc.mode, tc.sync)
			randomTransactions(t, db, rand.New(rand.NewSource(1)), n, tc.mode == "wal")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			checkReplay(t, m, name)
		})
	}
}

// TestJournalModeSwitches changes journal modes, page size and size of one
// database and checks the log after each step.
func TestJournalModeSwitches(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	rng := rand.New(rand.NewSource(2))
	steps := []struct{ mode, pre string }{
		{"delete", ""},
		{"wal", ""},
		{"truncate", ""},
		{"persist", "PRAGMA page_size=8192; VACUUM"},
		{"wal", ""},
		{"delete", "PRAGMA page_size=1024; VACUUM"},
		{"delete", "DELETE FROM t; VACUUM"},
	}
	for i, s := range steps {
		db := openDB(t, m.path("switch.db"), s.mode, "full")
		if s.pre != "" {
			mustExec(t, db, s.pre)
		}
		randomTransactions(t, db, rng, 100, s.mode == "wal")
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("step %d (%s) at %s", i, s.mode, mustPos(t, m, "switch.db"))
		checkReplay(t, m, "switch.db")
	}
}

func mustPos(t *testing.T, m *testMount, name string) ferry.Pos {
	t.Helper()
	pos, err := m.store.Pos(name)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}
