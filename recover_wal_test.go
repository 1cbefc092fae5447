package ferry_test

import (
	"context"
	"os"
	"testing"

	"github.com/ferrydb/ferry"
)

// TestRecoverWALCommitsOneByOne: commits in the WAL after the log's
// position (captured but not durable when Ferry stopped) come back as one
// change set each, not as one snapshot, whether or not the checksum index
// survived.
func TestRecoverWALCommitsOneByOne(t *testing.T) {
	for _, keepIndex := range []bool{true, false} {
		name := map[bool]string{true: "clean-index", false: "crash"}[keepIndex]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			layout := ferry.Layout{Dir: dir}
			path := seedDB(t, dir, "w.db", "wal", 10)
			db := sqliteDirect(t, path, "wal")
			defer db.Close()
			exec(t, db, "PRAGMA wal_autocheckpoint=0")
			for i := 0; i < 5; i++ {
				exec(t, db, "INSERT INTO t (v) VALUES (randomblob(200))")
			}

			// The store's snapshot records where in the WAL it stands.
			s := openStore(t, dir, ferry.StoreOptions{})
			before, _ := s.Pos("w.db")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			const more = 7
			for i := 0; i < more; i++ {
				exec(t, db, "UPDATE t SET v = randomblob(100) WHERE id = ?", i+1)
			}
			if !keepIndex {
				if err := os.Remove(layout.ChecksumIndexPath("w.db")); err != nil {
					t.Fatal(err)
				}
			}

			s = openStore(t, dir, ferry.StoreOptions{})
			defer s.Close()
			after, _ := s.Pos("w.db")
			if got := after.TXID - before.TXID; got != more {
				t.Fatalf("%d commits in the WAL became %d change sets", more, got)
			}
			if err := s.Verify(context.Background(), "w.db"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
