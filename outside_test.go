package ferry

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// TestCheckDBWriteAcceptsOlderWALVersion: a checkpoint copies, for each
// page, the newest frame of the WAL as its own snapshot saw it, which a
// commit made during the checkpoint may already have replaced. Such an
// older committed version of a page is a checkpoint write; a page that no
// commit ever held is not.
func TestCheckDBWriteAcceptsOlderWALVersion(t *testing.T) {
	dir := t.TempDir()
	layout := Layout{Dir: dir}
	path := layout.DBPath("v.db")
	if err := os.MkdirAll(layout.TreeDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	conn, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	// The open connection keeps the WAL: closing the last one checkpoints it.
	defer conn.Close()
	for _, q := range []string{
		"PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE t (v TEXT)",
		"INSERT INTO t VALUES ('first version')",
		"UPDATE t SET v = 'second version'",
	} {
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// The first and the last frame of page 2 in the WAL.
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	var versions [][]byte
	for off := walHeaderSize; off+walFrameHeaderSize+pageSize <= len(wal); off += walFrameHeaderSize + pageSize {
		if binary.BigEndian.Uint32(wal[off:]) == 2 {
			versions = append(versions, wal[off+walFrameHeaderSize:off+walFrameHeaderSize+pageSize])
		}
	}
	if len(versions) < 2 {
		t.Fatalf("page 2 has %d versions in the WAL, want at least 2", len(versions))
	}

	s := NewStore(layout, StoreOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := s.DB("v.db")
	for i, v := range versions {
		if err := d.CheckDBWrite(pageSize, v); err != nil {
			t.Errorf("version %d of page 2 refused: %v", i+1, err)
		}
	}
	changed := append([]byte(nil), versions[0]...)
	changed[pageSize-1] ^= 0xff
	if err := d.CheckDBWrite(pageSize, changed); !errors.Is(err, ErrNotCheckpoint) {
		t.Errorf("a page no commit held: %v, want ErrNotCheckpoint", err)
	}
	if err := d.CheckDBWrite(pageSize+100, versions[0][:16]); !errors.Is(err, ErrNotCheckpoint) {
		t.Errorf("a partial page: %v, want ErrNotCheckpoint", err)
	}
}
