package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// checkAfterCrash checks database name of mount m, restarted after a kill:
// integrity_check passes through the mount; every id in the ledger is a
// row; `ferry verify` recomputes the position's checksum from scratch; the
// local LTX log is one checksum chain that replays to the live database;
// the bucket catches up and each of its levels is a checksum chain ending
// at the local position; and `ferry restore` rebuilds the live database
// byte for byte. Nothing may be writing. It returns the largest row id.
func checkAfterCrash(t *testing.T, m *testMount, name, ledger, bucket string) int64 {
	t.Helper()
	out, err := runBounded(m, time.Minute, "sqlite3", "-bail", "-batch", "-cmd", ".timeout 10000", m.Path(name),
		"PRAGMA integrity_check; SELECT id FROM t ORDER BY id;")
	if err != nil {
		t.Fatalf("after restart: %v\n%s\nmount output:\n%s", err, out, m.output)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "ok" {
		t.Fatalf("integrity_check after restart: %s", out)
	}
	rows := make(map[int64]bool, len(lines))
	var maxID int64
	for _, l := range lines[1:] {
		id, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatalf("row id %q: %v", l, err)
		}
		rows[id] = true
		maxID = max(maxID, id)
	}
	acked := readLedger(t, ledger)
	for _, id := range acked {
		if !rows[id] {
			t.Fatalf("acknowledged row %d is missing after restart (%d acknowledged, %d rows, largest %d)", id, len(acked), len(rows), maxID)
		}
	}

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"verify", "-config", m.Config, name}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}

	res := replayLTXLog(t, m, name)
	live := liveImage(t, m, name)
	if !bytes.Equal(live, res.Image) {
		t.Fatalf("live database (%d bytes) differs from the %d-byte image replayed from %d local LTX files at byte %d",
			len(live), len(res.Image), res.Files, firstDiff(live, res.Image))
	}
	local := ferry.Pos{TXID: res.MaxTXID, PostApplyChecksum: res.Checksum}
	waitBucketAt(t, m, name, local)
	// The head may announce an object that the killed process never
	// stored; the restarted one stores it from its local log.
	dir := filepath.Join(bucket, filepath.FromSlash(name))
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := checkBucketChain(dir, local)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %v\nmount output:\n%s", err, m.output)
		}
		time.Sleep(50 * time.Millisecond)
	}

	restored := filepath.Join(t.TempDir(), "restored.db")
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"restore", "-config", m.Config, "-q", "-o", restored, name}, &stdout, &stderr); err != nil {
		t.Fatalf("ferry restore: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(restored)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, res.Image) {
		t.Fatalf("ferry restore gives %d bytes that differ from the live %d-byte database at byte %d",
			len(got), len(res.Image), firstDiff(got, res.Image))
	}
	return maxID
}

// liveImage copies database name and its WAL, if any, out of the mount and
// checkpoints the copy, so that the result is the whole database as
// readers of the mount see it, in one file. On a node that may not write,
// the mount's own file does not have the WAL's pages checkpointed.
func liveImage(t *testing.T, m *testMount, name string) []byte {
	t.Helper()
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "live.db")
	for _, suffix := range []string{"", "-wal"} {
		src := m.Path(name) + suffix
		if suffix != "" {
			if _, err := os.Stat(m.TreePath(name) + suffix); os.IsNotExist(err) {
				continue
			}
		}
		if out, err := runBounded(m, time.Minute, "cp", src, copyPath+suffix); err != nil {
			t.Fatalf("copy %s out of the mount: %v\n%s", src, err, out)
		}
	}
	if _, err := os.Stat(copyPath + "-wal"); err == nil {
		runSQLiteCLI(t, copyPath, "PRAGMA wal_checkpoint(TRUNCATE);")
	}
	b, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitBucketAt waits, up to 30 seconds, until `ferry status` shows
// the bucket at position want, as the local copy is.
func waitBucketAt(t *testing.T, m *testMount, name string, want ferry.Pos) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := clusterStatus(m)
		var local, bucket *ferry.Pos
		for _, d := range rep.Databases {
			if d.Name == name {
				local, bucket = d.Local, d.Bucket
			}
		}
		if err == nil && local != nil && *local != want {
			t.Fatalf("status shows %s at %s/%s locally, the local LTX log ends at %s/%s",
				name, local.TXID, local.PostApplyChecksum, want.TXID, want.PostApplyChecksum)
		}
		if err == nil && bucket != nil && *bucket == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket did not reach %s/%s within 30s: status %+v, err %v\nmount output:\n%s",
				want.TXID, want.PostApplyChecksum, rep, err, m.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bucketFile is one LTX file found in a file bucket.
type bucketFile struct {
	path    string
	level   int
	hdr     ltx.Header
	trailer ltx.Trailer
}

// listBucketLTX finds every LTX file of one database under dir, its
// directory in a file bucket, and decodes each whole (which checks its
// file checksum). A file's level is the name of its directory, so both
// Ferry's <db>/<level %04x>/ and Litestream's <db>/ltx/<level>/ layouts
// read the same. Files still being written (".tmp-" names) are skipped.
func listBucketLTX(dir string) ([]bucketFile, error) {
	var files []bucketFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".ltx") || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		level, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || level < 0 || level > 9 {
			return fmt.Errorf("%s: not in a level directory", path)
		}
		hdr, _, trailer, err := decodeLTXFile(path)
		if err != nil {
			return err
		}
		files = append(files, bucketFile{path, level, hdr, trailer})
		return nil
	})
	return files, err
}

// checkBucketChain checks the LTX files of one database in a file bucket
// (dir is the database's directory): at each level from 0 to 8 the files
// follow each other without a gap or overlap and each one's pre-apply
// checksum is the previous one's post-apply checksum; every snapshot
// (level 9) starts at TXID 1; files of any level that end at the same TXID
// agree on the checksum there; and the newest file of all ends at want.
func checkBucketChain(dir string, want ferry.Pos) error {
	files, err := listBucketLTX(dir)
	if err != nil {
		return fmt.Errorf("bucket: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("bucket %s holds no LTX files", dir)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].level != files[j].level {
			return files[i].level < files[j].level
		}
		return files[i].hdr.MinTXID < files[j].hdr.MinTXID
	})
	sums := make(map[ltx.TXID]ltx.Checksum)
	var newest ferry.Pos
	for i, f := range files {
		if prev := sums[f.hdr.MaxTXID]; prev != 0 && prev != f.trailer.PostApplyChecksum {
			return fmt.Errorf("bucket: %s ends TXID %s at checksum %s, another file at %s", f.path, f.hdr.MaxTXID, f.trailer.PostApplyChecksum, prev)
		}
		sums[f.hdr.MaxTXID] = f.trailer.PostApplyChecksum
		if f.hdr.MaxTXID > newest.TXID {
			newest = ferry.Pos{TXID: f.hdr.MaxTXID, PostApplyChecksum: f.trailer.PostApplyChecksum}
		}
		if f.level == 9 {
			if f.hdr.MinTXID != 1 {
				return fmt.Errorf("bucket: snapshot %s starts at TXID %s", f.path, f.hdr.MinTXID)
			}
			continue
		}
		if i == 0 || files[i-1].level != f.level {
			continue
		}
		prev := files[i-1]
		if f.hdr.MinTXID != prev.hdr.MaxTXID+1 {
			return fmt.Errorf("bucket: level %d has a gap or overlap: %s follows %s", f.level, filepath.Base(f.path), filepath.Base(prev.path))
		}
		if f.hdr.PreApplyChecksum != prev.trailer.PostApplyChecksum {
			return fmt.Errorf("bucket: level %d: %s starts at checksum %s, %s ends at %s", f.level,
				filepath.Base(f.path), f.hdr.PreApplyChecksum, filepath.Base(prev.path), prev.trailer.PostApplyChecksum)
		}
	}
	if newest != want {
		return fmt.Errorf("bucket's newest file ends at %s/%s, the local log at %s/%s", newest.TXID, newest.PostApplyChecksum, want.TXID, want.PostApplyChecksum)
	}
	return nil
}

// uploadInFlight inspects a file bucket right after a kill for signs that
// the kill cut an upload short: an object still being written (a ".tmp-"
// file not in seen, where earlier kills' leftovers are kept), or a head
// announcing a TXID that no object reaches yet.
func uploadInFlight(t *testing.T, dir string, seen map[string]bool) string {
	t.Helper()
	var tmp bool
	var maxTXID ltx.TXID
	var head struct {
		TXID ltx.TXID `json:"txid"`
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil || d.IsDir():
			return err
		case strings.HasPrefix(d.Name(), ".tmp-"):
			tmp = tmp || !seen[path]
			seen[path] = true
		case d.Name() == "ferry-head.json":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &head)
		case strings.HasSuffix(d.Name(), ".ltx"):
			_, hi, err := ltx.ParseFilename(d.Name())
			if err != nil {
				return err
			}
			maxTXID = max(maxTXID, hi)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("bucket: %v", err)
	}
	switch {
	case tmp:
		return "an object half-written"
	case head.TXID > maxTXID:
		return fmt.Sprintf("the head at TXID %s, objects only to %s", head.TXID, maxTXID)
	}
	return ""
}
