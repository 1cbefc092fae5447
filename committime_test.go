package ferry_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// TestCommitTimeIsTheWritersTimestamp applies a writer's change sets on a
// replica: its commit time is the one in the header of the newest change
// set it applied, the writer's, not when it applied it.
func TestCommitTimeIsTheWritersTimestamp(t *testing.T) {
	src := t.TempDir()
	path := seedDB(t, src, "c.db", "delete", 5)
	primary := openStore(t, src, ferry.StoreOptions{})
	if err := primary.Close(); err != nil {
		t.Fatal(err)
	}
	db := sqliteDirect(t, path, "delete")
	exec(t, db, "INSERT INTO t (v) VALUES (randomblob(10))")
	db.Close()
	primary = openStore(t, src, ferry.StoreOptions{})
	defer primary.Close()
	files := ltxFiles(t, ferry.Layout{Dir: src}, "c.db")
	if len(files) != 2 {
		t.Fatalf("%d files", len(files))
	}

	replica := openStore(t, t.TempDir(), ferry.StoreOptions{})
	defer replica.Close()
	if _, ok := replica.CommitTime("c.db"); ok {
		t.Fatal("commit time of a database the replica does not have")
	}
	if _, ok := replica.CommitTime("../c.db"); ok {
		t.Fatal("commit time of an invalid name")
	}
	var want time.Time
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := ltx.NewDecoder(bytes.NewReader(b))
		if err := dec.DecodeHeader(); err != nil {
			t.Fatal(err)
		}
		want = time.UnixMilli(dec.Header().Timestamp)
		if _, err := replica.ApplyLTX(context.Background(), "c.db", bytes.NewReader(b)); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
		got, ok := replica.CommitTime("c.db")
		if !ok || !got.Equal(want) {
			t.Fatalf("after %s: commit time %v (%v), want the header's %v", f, got, ok, want)
		}
	}
	if got, ok := primary.CommitTime("c.db"); !ok || !got.Equal(want) {
		t.Fatalf("writer's commit time %v (%v), want %v", got, ok, want)
	}
}
