package peer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
	_ "github.com/mattn/go-sqlite3"
)

// openStore opens a store on dir; with rows > 0 it first creates database
// name there with that many rows, which the store takes up as TXID 1.
func openStore(t *testing.T, dir, name string, rows int) *ferry.Store {
	t.Helper()
	if rows > 0 {
		path := ferry.Layout{Dir: dir}.DBPath(name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < rows; i++ {
			if _, err := db.Exec("INSERT INTO t (v) VALUES (randomblob(300))"); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
	}
	s := ferry.NewStore(ferry.Layout{Dir: dir}, ferry.StoreOptions{Logger: testLogger()})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// follow runs a client on sink that follows name from url until cond
// holds, for at most 20 s.
func follow(t *testing.T, sink Sink, name, url string, cond func(c *Client) bool) *Client {
	t.Helper()
	c := NewClient(ClientOptions{
		Sink:      sink,
		Holder:    func(string) (string, bool) { return url, true },
		Databases: func() []string { return []string{name} },
		Resolve:   20 * time.Millisecond,
		TempDir:   t.TempDir(),
		Logger:    testLogger(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i := 0; i < 2000 && !cond(c); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !cond(c) {
		t.Fatalf("client never got there: %+v", c.Stats())
	}
	return c
}

func serve(t *testing.T, src *ferry.Store) (*Server, string) {
	srv := &Server{Source: src, Holds: func(string) bool { return true }, Heartbeat: 50 * time.Millisecond, Logger: testLogger()}
	hs := httptest.NewUnstartedServer(srv)
	hs.EnableHTTP2 = false
	hs.Start()
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

func TestStreamSnapshotToEmptyReplica(t *testing.T) {
	holder := openStore(t, t.TempDir(), "a.db", 50)
	replica := openStore(t, t.TempDir(), "a.db", 0)
	_, url := serve(t, holder)
	want, err := holder.LocalPos("a.db")
	if err != nil || want.TXID == 0 {
		t.Fatalf("holder position %v %v", want, err)
	}
	c := follow(t, replica, "a.db", url, func(c *Client) bool {
		got, _ := replica.LocalPos("a.db")
		return got == want && c.Stats().Snapshots > 0
	})
	if st := c.Stats(); st.Snapshots != 1 || st.Diverged != 0 {
		t.Fatalf("stats %+v, want one snapshot and no divergence", st)
	}
	if dirs, err := replica.SetAside("a.db"); err != nil || len(dirs) != 0 {
		t.Fatalf("an empty replica set a copy aside: %v %v", dirs, err)
	}
}

// TestStreamResnapshotsDivergedReplica gives the holder and the replica
// different histories at the same TXID (split brain): the holder logs it
// and sends a snapshot, which replaces the replica's copy.
func TestStreamResnapshotsDivergedReplica(t *testing.T) {
	holder := openStore(t, t.TempDir(), "a.db", 50)
	replica := openStore(t, t.TempDir(), "a.db", 7)
	want, _ := holder.LocalPos("a.db")
	before, _ := replica.LocalPos("a.db")
	if before.TXID != want.TXID || before == want {
		t.Fatalf("setup: replica %v, holder %v: want the same TXID, other checksums", before, want)
	}
	srv, url := serve(t, holder)
	c := follow(t, replica, "a.db", url, func(c *Client) bool {
		got, _ := replica.LocalPos("a.db")
		return got == want && c.Stats().Diverged > 0
	})
	if st := c.Stats(); st.Diverged != 1 {
		t.Fatalf("client stats %+v, want one divergence", st)
	}
	if _, diverged := srv.Stats(); diverged != 1 {
		t.Fatalf("server counted %d divergences, want 1", diverged)
	}
	aside, err := replica.SetAside("a.db")
	if err != nil || len(aside) == 0 {
		t.Fatalf("diverged copy not set aside: %v %v", aside, err)
	}
}

// TestStreamRejectsBadFrames serves frames that are garbage, cut off,
// carry a wrong checksum, or carry an LTX file that does not verify: the
// client reports an error and the replica's copy stays as it was.
func TestStreamRejectsBadFrames(t *testing.T) {
	other := openStore(t, t.TempDir(), "a.db", 30)
	var snap bytes.Buffer
	snap.WriteByte(SnapshotDiverged)
	if _, err := other.WriteSnapshot(context.Background(), "a.db", &snap); err != nil {
		t.Fatal(err)
	}
	frameOf := func(typ byte, payload []byte) []byte {
		var b bytes.Buffer
		fw := newFrameWriter(&b)
		if err := fw.write(typ, "a.db", bytes.NewReader(payload), int64(len(payload))); err != nil {
			t.Fatal(err)
		}
		if err := fw.flush(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	good := frameOf(FrameSnapshot, snap.Bytes())
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 0xff
	badLTX := bytes.Clone(snap.Bytes())
	badLTX[len(badLTX)/2] ^= 0xff
	lying := bytes.Clone(good)
	binary.BigEndian.PutUint64(lying[3+len("a.db"):], 1<<50)
	for _, tc := range []struct {
		name string
		body []byte
		want error
	}{
		{"garbage", []byte("HTTP/1.1 200 OK but not a frame at all"), ErrBadFrame},
		{"truncated", good[:len(good)/2], ErrBadFrame},
		{"bad checksum", badCRC, ErrBadFrame},
		{"oversized length", lying, ErrBadFrame},
		{"bad LTX", frameOf(FrameSnapshot, badLTX), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			replica := openStore(t, dir, "a.db", 10)
			before, _ := replica.LocalPos("a.db")
			file, err := os.ReadFile(ferry.Layout{Dir: dir}.DBPath("a.db"))
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 16)
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				_ = rc.EnableFullDuplex()
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(tc.body)
				_ = rc.Flush()
			}))
			defer hs.Close()
			c := NewClient(ClientOptions{
				Sink: replica, Holder: func(string) (string, bool) { return hs.URL, true },
				Databases: func() []string { return []string{"a.db"} },
				Logger:    testLogger(),
				TempDir:   t.TempDir(),
			})
			c.follow["a.db"] = hs.URL
			st := &stream{c: c, url: hs.URL, names: map[string]bool{"a.db": true}, live: map[string]bool{}, kick: make(chan struct{}, 1)}
			c.streams[hs.URL] = st
			errs <- st.connect(context.Background())
			err = <-errs
			if err == nil {
				t.Fatal("a bad stream gave no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
			after, _ := replica.LocalPos("a.db")
			if after != before {
				t.Fatalf("position moved from %v to %v", before, after)
			}
			got, err := os.ReadFile(ferry.Layout{Dir: dir}.DBPath("a.db"))
			if err != nil || !bytes.Equal(got, file) {
				t.Fatalf("replica's file changed (%v)", err)
			}
		})
	}
}

// TestStreamSnapshotsReplicaBehindLog puts the replica at a TXID the
// holder's log no longer holds (retention removed it): the holder sends a
// snapshot, not a divergence, and the replica ends at the holder's
// position.
func TestStreamSnapshotsReplicaBehindLog(t *testing.T) {
	hdir := t.TempDir()
	holder := openStore(t, hdir, "a.db", 20)
	replica := openStore(t, t.TempDir(), "a.db", 0)
	var snap bytes.Buffer
	pos1, err := holder.WriteSnapshot(context.Background(), "a.db", &snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replica.ApplyLTX(context.Background(), "a.db", &snap); err != nil {
		t.Fatal(err)
	}
	// Advance the holder to TXID 2 by changing the last page, then drop
	// TXID 1 from its log as retention would.
	path := ferry.Layout{Dir: hdir}.DBPath("a.db")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	commit := uint32(len(file) / pageSize)
	old := file[len(file)-pageSize:]
	page := bytes.Clone(old)
	page[pageSize-1] ^= 0x5a
	var b bytes.Buffer
	enc, err := ltx.NewEncoder(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: pageSize, Commit: commit, MinTXID: 2, MaxTXID: 2,
		Timestamp: time.Now().UnixMilli(), PreApplyChecksum: pos1.PostApplyChecksum}); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: commit}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag | (pos1.PostApplyChecksum ^ ltx.ChecksumPage(commit, old) ^ ltx.ChecksumPage(commit, page)))
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := holder.ApplyLTX(context.Background(), "a.db", &b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ferry.Layout{Dir: hdir}.LTXPath("a.db", 1, 1)); err != nil {
		t.Fatal(err)
	}
	_, url := serve(t, holder)
	c := follow(t, replica, "a.db", url, func(c *Client) bool {
		got, _ := replica.LocalPos("a.db")
		return got == want && c.Stats().Snapshots > 0
	})
	if st := c.Stats(); st.Snapshots != 1 || st.Diverged != 0 {
		t.Fatalf("stats %+v, want one snapshot and no divergence", st)
	}
	// The replica's copy held only what it applied: nothing to keep.
	if dirs, err := replica.SetAside("a.db"); err != nil || len(dirs) != 0 {
		t.Fatalf("a replica merely behind set its copy aside: %v %v", dirs, err)
	}
}
