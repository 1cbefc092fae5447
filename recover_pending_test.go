package ferry_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/ferrydb/ferry"
)

// TestRecoverPendingLog: a durable change set that was only in the
// pending log when the process died becomes its LTX file again, byte for
// byte, and the commit listeners (the replicator, started before the
// store) hear of it, so that it is uploaded without waiting for the next
// commit.
func TestRecoverPendingLog(t *testing.T) {
	dir := t.TempDir()
	layout := ferry.Layout{Dir: dir}
	path := seedDB(t, dir, "p.db", "delete", 10)
	s := openStore(t, dir, ferry.StoreOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, "delete")
	exec(t, db, "INSERT INTO t (v) VALUES (randomblob(100))")
	db.Close()
	s = openStore(t, dir, ferry.StoreOptions{}) // writes the repair as TXID 2
	want, _ := s.Pos("p.db")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := ltxFiles(t, layout, "p.db")
	last := files[len(files)-1]
	rec, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	// As if the process died after the pending log's sync: the file is
	// gone, the record and the index from the clean close remain.
	os.Remove(last)
	os.Remove(layout.ChecksumIndexPath("p.db"))
	var lenb [8]byte
	binary.BigEndian.PutUint64(lenb[:], uint64(len(rec)))
	pending := append(append(lenb[:], rec...), 1, 2, 3) // and a torn record
	if err := os.WriteFile(layout.PendingPath("p.db"), pending, 0o644); err != nil {
		t.Fatal(err)
	}
	s = ferry.NewStore(layout, ferry.StoreOptions{Logger: slog.New(slog.DiscardHandler)})
	heard := &recordingListener{}
	s.AddCommitListener(heard)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Pos("p.db"); got != want {
		t.Fatalf("pos %s, want %s", got, want)
	}
	if got := heard.last["p.db"]; got != want {
		t.Fatalf("listener last heard of p.db at %s, want %s", got, want)
	}
	got, err := os.ReadFile(last)
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("LTX file not restored from the pending log: %v", err)
	}
}

// recordingListener is a CommitListener that keeps the last position it
// was told of for each database.
type recordingListener struct {
	mu   sync.Mutex
	last map[string]ferry.Pos
}

func (l *recordingListener) Committed(name string, pos ferry.Pos) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]ferry.Pos)
	}
	l.last[name] = pos
}
