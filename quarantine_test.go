package ferry_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
)

// badPageSize returns 64 KiB that start with SQLite's header but whose page
// size field says 9007.
func badPageSize() []byte {
	b := bytes.Repeat([]byte{0x5a}, 64<<10)
	copy(b, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(b[16:18], 9007)
	return b
}

// TestQuarantine checks that a database file that cannot be opened, found
// at start-up or appearing later, is quarantined: the store opens, the
// file is left as it is, writes and change sets from the bucket are
// refused, and Faults names it with the reason.
func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	layout := ferry.Layout{Dir: dir}
	seedDB(t, dir, "good.db", "DELETE", 3)
	bad := badPageSize()
	if err := os.WriteFile(layout.DBPath("bad.db"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, ferry.StoreOptions{})
	defer s.Close()

	if got := s.DBs(); len(got) != 1 || got[0] != "good.db" {
		t.Fatalf("DBs() = %q, want only good.db", got)
	}
	// One that appears after Open, as a restore or a rename would put it.
	if err := os.WriteFile(layout.DBPath("late.db"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad.db", "late.db"} {
		role, db, err := s.Classify(name)
		if err != nil || role != ferry.RoleDB || db == nil {
			t.Fatalf("Classify(%s) = %v, %v, %v", name, role, db, err)
		}
		if err := db.CheckWrite(context.Background()); !errors.Is(err, ferry.ErrReadOnly) || !strings.Contains(err.Error(), "quarantined") {
			t.Errorf("CheckWrite(%s) = %v, want a read-only error saying it is quarantined", name, err)
		}
		if _, err := s.ApplyLTX(context.Background(), name, bytes.NewReader(nil)); err == nil {
			t.Errorf("ApplyLTX(%s) succeeded", name)
		}
	}
	faults := s.Faults()
	if len(faults) != 2 {
		t.Fatalf("Faults() = %+v, want bad.db and late.db", faults)
	}
	for i, name := range []string{"bad.db", "late.db"} {
		f := faults[i]
		if f.Name != name || f.State != ferry.FaultQuarantined || !strings.Contains(f.Reason, "page size 9007") {
			t.Errorf("fault %d = %+v, want %s quarantined for its page size", i, f, name)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, name := range []string{"bad.db", "late.db"} {
		if got, err := os.ReadFile(layout.DBPath(name)); err != nil || !bytes.Equal(got, bad) {
			t.Errorf("%s changed (%d bytes, err %v)", name, len(got), err)
		}
		if _, err := os.Stat(layout.MetaDir(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s has a metadata directory: %v", name, err)
		}
	}
}
