package ferry

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydb/ferry/ltx"
)

func TestLocalLogListAndBucketPos(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	if files, err := l.ListLog("a.db"); err != nil || files != nil {
		t.Fatalf("missing log: %v %v", files, err)
	}
	if err := os.MkdirAll(l.LTXDir("a.db"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{LTXFilename(3, 4), LTXFilename(1, 2), "junk", LTXFilename(5, 5) + ".tmp"} {
		if err := os.WriteFile(filepath.Join(l.LTXDir("a.db"), n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := l.ListLog("a.db")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].MinTXID != 1 || files[1].MaxTXID != 4 || files[1].Size != 1 {
		t.Fatalf("ListLog = %+v", files)
	}
	names, err := l.LogDatabases()
	if err != nil || len(names) != 1 || names[0] != "a.db" {
		t.Fatalf("LogDatabases = %v, %v", names, err)
	}
	if pos, err := l.ReadBucketPos("a.db"); err != nil || !pos.IsZero() {
		t.Fatalf("no bucket position: %v %v", pos, err)
	}
	want := Pos{TXID: 4, PostApplyChecksum: 0x8000000000000abc}
	if err := l.WriteBucketPos("a.db", want); err != nil {
		t.Fatal(err)
	}
	if got, err := l.ReadBucketPos("a.db"); err != nil || got != want {
		t.Fatalf("ReadBucketPos = %v, %v; want %v", got, err, want)
	}
	if err := os.WriteFile(l.BucketPosPath("a.db"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadBucketPos("a.db"); err == nil {
		t.Fatal("a garbled bucket position parsed")
	}
}

func TestStoreSubscribeCoalesces(t *testing.T) {
	s := NewStore(Layout{Dir: t.TempDir()}, StoreOptions{})
	ch, cancel := s.Subscribe("a.db")
	other, cancelOther := s.Subscribe("b.db")
	defer cancelOther()
	s.notify("a.db", Pos{TXID: 1})
	s.notify("a.db", Pos{TXID: 2})
	select {
	case <-ch:
	default:
		t.Fatal("no wake-up after a commit")
	}
	select {
	case <-ch:
		t.Fatal("wake-ups did not coalesce")
	default:
	}
	select {
	case <-other:
		t.Fatal("another database's subscriber was woken")
	default:
	}
	cancel()
	s.notify("a.db", Pos{TXID: 3})
	select {
	case <-ch:
		t.Fatal("woken after cancel")
	default:
	}
	if len(s.subs.subs["a.db"]) != 0 {
		t.Fatal("cancelled subscription still held")
	}
}

// TestChecksumAtRecentChangeSets: a change set merged into a larger log
// file but still kept on its own for a reader's stream has a known
// checksum, so a reader stopped there continues instead of taking a
// snapshot.
func TestChecksumAtRecentChangeSets(t *testing.T) {
	s := NewStore(Layout{Dir: t.TempDir()}, StoreOptions{})
	d := newDB(s, "a.db")
	d.state = stateDatabase
	d.pos = Pos{TXID: 5, PostApplyChecksum: 0x8000000000000005}
	d.recent = []queued{{hdr: ltxHeader(3, 3), post: 0x8000000000000003}, {hdr: ltxHeader(4, 4), post: 0x8000000000000004}}
	s.dbs["a.db"] = d
	for txid, want := range map[uint64]uint64{3: 0x8000000000000003, 4: 0x8000000000000004, 5: 0x8000000000000005} {
		got, ok, err := s.ChecksumAt("a.db", ltxTXID(txid))
		if err != nil || !ok || uint64(got) != want {
			t.Errorf("ChecksumAt(%d) = %x, %v, %v; want %x", txid, uint64(got), ok, err, want)
		}
	}
	if _, ok, err := s.ChecksumAt("a.db", 2); ok || err != nil {
		t.Errorf("ChecksumAt(2) known without a log file or a kept change set: %v %v", ok, err)
	}
}

func ltxHeader(min, max uint64) ltx.Header {
	return ltx.Header{MinTXID: ltx.TXID(min), MaxTXID: ltx.TXID(max)}
}

func ltxTXID(v uint64) ltx.TXID { return ltx.TXID(v) }
