package ferry_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
)

// TestIndexNotTrustedAfterHiddenChange changes a database file while the
// store is closed and puts its size and modification time back, as
// `touch -d` can. The checksum index saved at the clean close must not be
// trusted: recovery finds the change, says so at error level, and brings
// the log level with the file.
func TestIndexNotTrustedAfterHiddenChange(t *testing.T) {
	dir := t.TempDir()
	path := seedDB(t, dir, "h.db", "delete", 20)
	s := openStore(t, dir, ferry.StoreOptions{})
	before, _ := s.Pos("h.db")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The tail of the second page is a row's blob.
	if _, err := f.WriteAt([]byte("changed behind!!"), 2*4096-16); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	s = ferry.NewStore(ferry.Layout{Dir: dir}, ferry.StoreOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if after, _ := s.Pos("h.db"); after.TXID != before.TXID+1 {
		t.Errorf("pos %s after recovery from %s; want one change set for the hidden change", after, before)
	}
	if err := s.Verify(context.Background(), "h.db"); err != nil {
		t.Error(err)
	}
	if _, _, err := ferry.VerifyFiles(context.Background(), ferry.Layout{Dir: dir}, "h.db"); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "does not match its log") {
		t.Errorf("recovery did not report the difference at error level; logs:\n%s", logs.String())
	}
}
