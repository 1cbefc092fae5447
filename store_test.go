package ferry_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	_ "github.com/mattn/go-sqlite3"
)

func openStore(t *testing.T, dir string, opts ferry.StoreOptions) *ferry.Store {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := ferry.NewStore(ferry.Layout{Dir: dir}, opts)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

// sqliteDirect opens a database file directly, not through the mount.
func sqliteDirect(t *testing.T, path, mode string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode="+mode)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// seedDB creates a database in the tree of dir with n rows.
func seedDB(t *testing.T, dir, name, mode string, n int) string {
	t.Helper()
	path := ferry.Layout{Dir: dir}.DBPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, mode)
	defer db.Close()
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	for i := 0; i < n; i++ {
		exec(t, db, "INSERT INTO t (v) VALUES (randomblob(300))")
	}
	return path
}

func ltxFiles(t *testing.T, layout ferry.Layout, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(layout.LTXDir(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, _, err := ferry.ParseLTXFilename(e.Name()); err == nil {
			out = append(out, filepath.Join(layout.LTXDir(name), e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenSnapshotsExistingDatabase: a database with no history gets a
// snapshot as TXID 1, and a clean restart reuses the checksum index.
func TestOpenSnapshotsExistingDatabase(t *testing.T) {
	dir := t.TempDir()
	seedDB(t, dir, "a/b.db", "delete", 50)
	s := openStore(t, dir, ferry.StoreOptions{})
	pos, err := s.Pos("a/b.db")
	if err != nil || pos.TXID != 1 {
		t.Fatalf("pos = %s, %v", pos, err)
	}
	if err := s.Verify(context.Background(), "a/b.db"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: dir}
	if _, err := os.Stat(layout.ChecksumIndexPath("a/b.db")); err != nil {
		t.Fatalf("no checksum index after a clean close: %v", err)
	}
	s = openStore(t, dir, ferry.StoreOptions{})
	defer s.Close()
	if got, _ := s.Pos("a/b.db"); got != pos {
		t.Fatalf("pos after restart %s, want %s", got, pos)
	}
	if _, err := os.Stat(layout.ChecksumIndexPath("a/b.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checksum index still present while open: %v", err)
	}
	if len(ltxFiles(t, layout, "a/b.db")) != 1 {
		t.Fatal("restart wrote a change set")
	}
}

// TestRecoverChangedWithoutLog: the database changed but its change set
// never reached the log (a crash in between). Recovery writes one change
// set with every page, continuing the chain.
func TestRecoverChangedWithoutLog(t *testing.T) {
	dir := t.TempDir()
	path := seedDB(t, dir, "c.db", "delete", 20)
	s := openStore(t, dir, ferry.StoreOptions{})
	before, _ := s.Pos("c.db")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, "delete")
	exec(t, db, "INSERT INTO t (v) VALUES (randomblob(5000))")
	db.Close()

	s = openStore(t, dir, ferry.StoreOptions{})
	defer s.Close()
	after, _ := s.Pos("c.db")
	if after.TXID != before.TXID+1 {
		t.Fatalf("pos %s after recovery from %s", after, before)
	}
	if err := s.Verify(context.Background(), "c.db"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ferry.VerifyFiles(context.Background(), ferry.Layout{Dir: dir}, "c.db"); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverHotJournal: a transaction cut off by a crash left a hot
// journal and half-written pages. Recovery rolls it back and writes no
// change set.
func TestRecoverHotJournal(t *testing.T) {
	dir := t.TempDir()
	path := seedDB(t, dir, "h.db", "delete", 200)
	s := openStore(t, dir, ferry.StoreOptions{})
	before, _ := s.Pos("h.db")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)

	// Spill a large transaction into the database file, then capture the
	// files as a crash would leave them.
	db := sqliteDirect(t, path, "delete")
	exec(t, db, "PRAGMA cache_size=2")
	exec(t, db, "BEGIN")
	exec(t, db, "UPDATE t SET v = randomblob(300)")
	crashDB, _ := os.ReadFile(path)
	crashJournal, err := os.ReadFile(path + "-journal")
	if err != nil {
		t.Fatalf("no journal mid-transaction: %v", err)
	}
	exec(t, db, "ROLLBACK")
	db.Close()
	if bytes.Equal(crashDB, orig) {
		t.Fatal("transaction did not spill into the database file")
	}
	if err := os.WriteFile(path, crashDB, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-journal", crashJournal, 0o644); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, ferry.StoreOptions{})
	defer s.Close()
	if after, _ := s.Pos("h.db"); after != before {
		t.Fatalf("pos %s after rolling back, want %s", after, before)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Fatal("database differs from its state before the cut-off transaction")
	}
	if _, err := os.Stat(path + "-journal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("hot journal left behind")
	}
	if err := s.Verify(context.Background(), "h.db"); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverUncommittedWALFrames: frames of a transaction that never
// committed make no change set; committed frames the log lacks are
// recovered.
func TestRecoverUncommittedWALFrames(t *testing.T) {
	dir := t.TempDir()
	path := seedDB(t, dir, "w.db", "wal", 100)
	s := openStore(t, dir, ferry.StoreOptions{})
	before, _ := s.Pos("w.db")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, "wal")
	exec(t, db, "PRAGMA wal_autocheckpoint=0")
	exec(t, db, "PRAGMA cache_size=2")
	exec(t, db, "BEGIN")
	exec(t, db, "UPDATE t SET v = randomblob(300)")
	crashDB, _ := os.ReadFile(path)
	crashWAL, err := os.ReadFile(path + "-wal")
	if err != nil || len(crashWAL) <= 32 {
		t.Fatalf("no uncommitted frames in the WAL (%d bytes): %v", len(crashWAL), err)
	}
	exec(t, db, "ROLLBACK")
	db.Close()
	os.Remove(path + "-shm")
	if err := os.WriteFile(path, crashDB, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-wal", crashWAL, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, ferry.StoreOptions{})
	defer s.Close()
	if after, _ := s.Pos("w.db"); after != before {
		t.Fatalf("pos %s after uncommitted frames, want %s", after, before)
	}
	if err := s.Verify(context.Background(), "w.db"); err != nil {
		t.Fatal(err)
	}
}

// TestApplyLTX replays a primary's log onto a replica store and checks
// that bad input changes nothing.
func TestApplyLTX(t *testing.T) {
	src := t.TempDir()
	path := seedDB(t, src, "r.db", "delete", 30)
	primary := openStore(t, src, ferry.StoreOptions{})
	if err := primary.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, "delete")
	exec(t, db, "DELETE FROM t WHERE id > 10")
	exec(t, db, "VACUUM")
	db.Close()
	primary = openStore(t, src, ferry.StoreOptions{})
	want, _ := primary.Pos("r.db")
	defer primary.Close()
	files := ltxFiles(t, ferry.Layout{Dir: src}, "r.db")
	if len(files) != 2 {
		t.Fatalf("%d files", len(files))
	}

	replica := openStore(t, t.TempDir(), ferry.StoreOptions{})
	defer replica.Close()
	ctx := context.Background()
	apply := func(path string, mangle func([]byte) []byte) error {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if mangle != nil {
			b = mangle(b)
		}
		_, err = replica.ApplyLTX(ctx, "r.db", bytes.NewReader(b))
		return err
	}
	// Out of order, corrupt, truncated: refused, nothing changes.
	if err := apply(files[1], nil); err == nil {
		t.Fatal("applied TXID 2 before TXID 1")
	}
	if err := apply(files[0], func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }); err == nil {
		t.Fatal("applied a corrupt file")
	}
	if err := apply(files[0], func(b []byte) []byte { return b[:len(b)/2] }); err == nil {
		t.Fatal("applied a truncated file")
	}
	if pos, _ := replica.LocalPos("r.db"); !pos.IsZero() {
		t.Fatalf("replica at %s after refused files", pos)
	}
	for _, f := range files {
		if err := apply(f, nil); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
	}
	if got, _ := replica.Pos("r.db"); got != want {
		t.Fatalf("replica at %s, want %s", got, want)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(ferry.Layout{Dir: replica.Layout().Dir}.DBPath("r.db"))
	if !bytes.Equal(a, b) {
		t.Fatal("replica differs from primary")
	}
	if _, err := replica.ApplyLTX(ctx, "../x.db", bytes.NewReader(nil)); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := replica.ApplyLTX(ctx, "r.db", io.LimitReader(bytes.NewReader([]byte("garbage")), 7)); err == nil {
		t.Fatal("applied garbage")
	}
}

// TestRetention removes expired files but keeps the newest and, with
// KeepUntilUploaded, every file the bucket lacks.
func TestRetention(t *testing.T) {
	for _, keep := range []bool{false, true} {
		dir := t.TempDir()
		layout := ferry.Layout{Dir: dir}
		path := seedDB(t, dir, "k.db", "delete", 5)
		for i := 0; i < 3; i++ {
			s := openStore(t, dir, ferry.StoreOptions{})
			s.Close()
			db := sqliteDirect(t, path, "delete")
			exec(t, db, "INSERT INTO t (v) VALUES (1)")
			db.Close()
		}
		old := time.Now().Add(-time.Hour)
		for _, f := range ltxFiles(t, layout, "k.db") {
			os.Chtimes(f, old, old)
		}
		if err := os.WriteFile(layout.BucketPosPath("k.db"), []byte("0000000000000001/8000000000000000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, dir, ferry.StoreOptions{Retention: time.Second, KeepUntilUploaded: keep})
		deadline := time.Now().Add(10 * time.Second)
		want := 1
		if keep {
			want = 3 // TXIDs 2 to 4: the bucket holds only TXID 1
		}
		for len(ltxFiles(t, layout, "k.db")) != want && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := len(ltxFiles(t, layout, "k.db")); got != want {
			t.Errorf("keep=%v: %d files left, want %d", keep, got, want)
		}
		s.Close()
	}
}

// TestReplaceBehind: a copy that holds only what it applied from elsewhere
// is replaced by a snapshot without being set aside; one whose position it
// did not apply (it committed on its own) is set aside.
func TestReplaceBehind(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	seedDB(t, src, "b.db", "delete", 20)
	primary := openStore(t, src, ferry.StoreOptions{})
	defer primary.Close()
	want, _ := primary.Pos("b.db")
	files := ltxFiles(t, ferry.Layout{Dir: src}, "b.db")
	var snap bytes.Buffer
	if _, err := primary.WriteSnapshot(ctx, "b.db", &snap); err != nil {
		t.Fatal(err)
	}

	for _, own := range []bool{false, true} {
		dir := t.TempDir()
		replica := openStore(t, dir, ferry.StoreOptions{})
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := replica.ApplyLTX(ctx, "b.db", bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		if own {
			// As if it had committed since: its position is not one it
			// applied.
			if err := os.WriteFile(filepath.Join(ferry.Layout{Dir: dir}.MetaDir("b.db"), "applied-pos"), []byte("0000000000000001/0000000000000001\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		pos, aside, err := replica.ReplaceBehind(ctx, "b.db", bytes.NewReader(snap.Bytes()), "behind the holder's log")
		if err != nil {
			t.Fatalf("own=%v: %v", own, err)
		}
		if pos != want {
			t.Fatalf("own=%v: at %s, want %s", own, pos, want)
		}
		if own != (aside != "") {
			t.Fatalf("own=%v: set aside in %q", own, aside)
		}
		if dirs, _ := replica.SetAside("b.db"); len(dirs) != map[bool]int{false: 0, true: 1}[own] {
			t.Fatalf("own=%v: lost+found holds %v", own, dirs)
		}
		replica.Close()
	}
}
