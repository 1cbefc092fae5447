package ferry_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry"
)

// TestReplaceDiverged replaces a database whose history differs from
// another copy's with that copy's snapshot: the old file and log are kept
// in lost+found, and the store carries on from the snapshot's position.
func TestReplaceDiverged(t *testing.T) {
	ctx := context.Background()
	mine, theirs := t.TempDir(), t.TempDir()
	seedDB(t, mine, "a.db", "delete", 5)
	seedDB(t, theirs, "a.db", "delete", 3)
	a := openStore(t, mine, ferry.StoreOptions{})
	defer a.Close()
	b := openStore(t, theirs, ferry.StoreOptions{})
	defer b.Close()

	want, err := b.Pos("a.db")
	if err != nil {
		t.Fatal(err)
	}
	snaps := ltxFiles(t, b.Layout(), "a.db")
	if len(snaps) != 1 {
		t.Fatalf("other copy's log: %v, want one snapshot", snaps)
	}
	snapshot, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(a.Layout().DBPath("a.db"))
	if err != nil {
		t.Fatal(err)
	}
	oldPos, _ := a.Pos("a.db")
	if sum, ok, err := a.ChecksumAt("a.db", oldPos.TXID); err != nil || !ok || sum != oldPos.PostApplyChecksum {
		t.Fatalf("ChecksumAt(%s) = %s, %v, %v; want %s", oldPos.TXID, sum, ok, err, oldPos.PostApplyChecksum)
	}

	pos, aside, err := a.ReplaceDiverged(ctx, "a.db", bytes.NewReader(snapshot), "test")
	if err != nil {
		t.Fatal(err)
	}
	if pos != want {
		t.Fatalf("position after replace %s, want %s", pos, want)
	}
	got, err := os.ReadFile(a.Layout().DBPath("a.db"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(b.Layout().DBPath("a.db"))
	if !bytes.Equal(got, other) {
		t.Fatal("database differs from the snapshot it was replaced with")
	}
	kept, err := os.ReadFile(filepath.Join(aside, "a.db"))
	if err != nil || !bytes.Equal(kept, before) {
		t.Fatalf("set-aside copy differs from the old database (%v)", err)
	}
	if m, _ := filepath.Glob(filepath.Join(aside, "ltx", "*.ltx")); len(m) == 0 {
		t.Fatalf("no LTX files set aside in %s", aside)
	}
	dirs, err := a.SetAside("a.db")
	if err != nil || len(dirs) != 1 || dirs[0] != aside {
		t.Fatalf("SetAside = %v, %v; want [%s]", dirs, err, aside)
	}
	if log := ltxFiles(t, a.Layout(), "a.db"); len(log) != 1 {
		t.Fatalf("log after replace: %v, want the snapshot alone", log)
	}
	if _, ok, err := a.ChecksumAt("a.db", oldPos.TXID+100); ok || err != nil {
		t.Fatalf("ChecksumAt past the log: ok=%v err=%v", ok, err)
	}
	if err := a.Verify(ctx, "a.db"); err != nil {
		t.Fatalf("verify after replace: %v", err)
	}
}
