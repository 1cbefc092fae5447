package replicate

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
	_ "github.com/mattn/go-sqlite3"
)

// testDB is a real SQLite database on plain disk whose every transaction
// is captured, by diffing the file's pages, as one LTX file in a data
// directory's local log, the way the mount records them.
type testDB struct {
	t      testing.TB
	name   string
	layout ferry.Layout
	path   string
	db     *sql.DB
	prev   []byte
	pos    ferry.Pos
	// history maps each TXID to the database file's content after it.
	history map[ltx.TXID][]byte
	times   map[ltx.TXID]time.Time
}

const testPageSize = 4096

func newTestDB(t testing.TB, layout ferry.Layout, name string) *testDB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE&_sync=OFF")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(fmt.Sprintf("PRAGMA page_size=%d", testPageSize)); err != nil {
		t.Fatal(err)
	}
	d := &testDB{t: t, name: name, layout: layout, path: path, db: db, history: map[ltx.TXID][]byte{}, times: map[ltx.TXID]time.Time{}}
	d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	return d
}

// continueTestDB picks up a database file restored elsewhere at pos, so
// that a second node can keep writing it.
func continueTestDB(t testing.TB, layout ferry.Layout, name, file string, pos ferry.Pos) *testDB {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "src.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE&_sync=OFF")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return &testDB{t: t, name: name, layout: layout, path: path, db: db, prev: data, pos: pos,
		history: map[ltx.TXID][]byte{pos.TXID: data}, times: map[ltx.TXID]time.Time{}}
}

// exec runs statements in one transaction and records it.
func (d *testDB) exec(stmts ...string) ferry.Pos {
	d.t.Helper()
	tx, err := d.db.Begin()
	if err != nil {
		d.t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(s); err != nil {
			d.t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		d.t.Fatal(err)
	}
	return d.capture()
}

// execRaw runs one statement outside a transaction, such as VACUUM, and
// records it.
func (d *testDB) execRaw(stmt string) ferry.Pos {
	d.t.Helper()
	if _, err := d.db.Exec(stmt); err != nil {
		d.t.Fatal(err)
	}
	return d.capture()
}

// insert adds n rows of size bytes each in one transaction.
func (d *testDB) insert(n, size int) ferry.Pos {
	d.t.Helper()
	tx, err := d.db.Begin()
	if err != nil {
		d.t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprintf("%0*d", size, i)); err != nil {
			d.t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		d.t.Fatal(err)
	}
	return d.capture()
}

// capture writes the pages that changed since the last capture as the next
// LTX file.
func (d *testDB) capture() ferry.Pos {
	d.t.Helper()
	cur, err := os.ReadFile(d.path)
	if err != nil {
		d.t.Fatal(err)
	}
	txid := d.pos.TXID + 1
	// The page size is read from the header, as the mount does: a VACUUM
	// may have changed it, and then every page is in the change set.
	pageSize := uint32(binary.BigEndian.Uint16(cur[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	full := txid == 1 || len(d.prev) < 18 || !bytes.Equal(cur[16:18], d.prev[16:18])
	commit := uint32(len(cur) / int(pageSize))
	now := time.Now()
	hdr := ltx.Header{Version: ltx.Version, PageSize: pageSize, Commit: commit, MinTXID: txid, MaxTXID: txid,
		Timestamp: now.UnixMilli(), PreApplyChecksum: d.pos.PostApplyChecksum}
	var buf bytes.Buffer
	enc, _ := ltx.NewEncoder(&buf)
	if err := enc.EncodeHeader(hdr); err != nil {
		d.t.Fatal(err)
	}
	lock := ltx.LockPgno(pageSize)
	ps := int(pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		off := int(pgno-1) * ps
		page := cur[off : off+ps]
		if !full && off+ps <= len(d.prev) && bytes.Equal(page, d.prev[off:off+ps]) {
			continue
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			d.t.Fatal(err)
		}
	}
	sum, err := ltx.ChecksumDatabase(bytes.NewReader(cur), pageSize, commit)
	if err != nil {
		d.t.Fatal(err)
	}
	enc.SetPostApplyChecksum(sum)
	if err := enc.Close(); err != nil {
		d.t.Fatal(err)
	}
	path := d.layout.LTXPath(d.name, txid, txid)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.prev = cur
	d.pos = ferry.Pos{TXID: txid, PostApplyChecksum: sum}
	d.history[txid] = cur
	d.times[txid] = now
	return d.pos
}

// fileApplier applies LTX files onto plain database files with the ltx
// package, standing in for the core's store.
type fileApplier struct {
	dir string
	mu  sync.Mutex
	pos map[string]ferry.Pos
}

func newFileApplier(t testing.TB) *fileApplier {
	return &fileApplier{dir: t.TempDir(), pos: map[string]ferry.Pos{}}
}

func (a *fileApplier) path(name string) string { return filepath.Join(a.dir, filepath.FromSlash(name)) }

func (a *fileApplier) LocalPos(name string) (ferry.Pos, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pos[name], nil
}

func (a *fileApplier) ApplyLTX(ctx context.Context, name string, r io.Reader) (ferry.Pos, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(a.path(name)), 0o755); err != nil {
		return ferry.Pos{}, err
	}
	f, err := os.OpenFile(a.path(name), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return ferry.Pos{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return ferry.Pos{}, err
	}
	dec := ltx.NewDecoder(bytes.NewReader(data))
	if err := dec.DecodeHeader(); err != nil {
		return ferry.Pos{}, err
	}
	if h, cur := dec.Header(), a.pos[name]; h.MinTXID != cur.TXID+1 && !h.IsSnapshot() {
		return ferry.Pos{}, fmt.Errorf("LTX starts at %s, local is at %s", h.MinTXID, cur.TXID)
	}
	hdr, trailer, err := ltx.Apply(ctx, f, bytes.NewReader(data))
	if err != nil {
		return ferry.Pos{}, err
	}
	p := ferry.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	a.pos[name] = p
	return p, nil
}

// seed applies the first n transactions of d so the applier starts there.
func (a *fileApplier) seed(t testing.TB, d *testDB, n ltx.TXID) {
	t.Helper()
	data := d.history[n]
	if err := os.MkdirAll(filepath.Dir(a.path(d.name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path(d.name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := ltx.ChecksumDatabase(bytes.NewReader(data), testPageSize, uint32(len(data)/testPageSize))
	if err != nil {
		t.Fatal(err)
	}
	a.pos[d.name] = ferry.Pos{TXID: n, PostApplyChecksum: sum}
}

// epochGuard is a WriteGuard with a settable epoch.
type epochGuard struct {
	mu    sync.Mutex
	epoch uint64
}

func (g *epochGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.epoch, nil
}

// fakeClock is a settable clock for driving compaction.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// mustEqualFile fails unless the file at path holds want.
func mustEqualFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the expected %d bytes", path, len(got), len(want))
	}
}

// quietOptions returns Options that log only errors.
func testOptions() Options {
	return Options{Logger: testLogger(), UploadInterval: 10 * time.Millisecond}
}
