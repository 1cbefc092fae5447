package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
	"github.com/ferrydb/ferry/replicate"
)

// uploadSnapshot writes a real SQLite database as TXID 1 into a file
// bucket, the way the replicator does, and returns the database's bytes.
func uploadSnapshot(t *testing.T, bucketDir, name string) []byte {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('hello'), ('world')"} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	var buf bytes.Buffer
	enc, _ := ltx.NewEncoder(&buf)
	commit := uint32(len(data) / pageSize)
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: pageSize, Commit: commit, MinTXID: 1, MaxTXID: 1, Timestamp: 1}); err != nil {
		t.Fatal(err)
	}
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data[(pgno-1)*pageSize:pgno*pageSize]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	layout := ferry.Layout{Dir: t.TempDir()}
	p := layout.LTXPath(name, 1, 1)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	backend, err := replicate.NewFileBackend(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	r := replicate.New(backend, layout, replicate.Options{Prefix: "pfx"})
	if err := r.Sync(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRestoreCommand(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	want := uploadSnapshot(t, bucket, "tenants/a.db")
	out := filepath.Join(t.TempDir(), "a.db")

	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"restore", "-bucket-type", "file", "-path", bucket, "-prefix", "pfx", "tenants/a.db", "-o", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored file differs (%v)", err)
	}
	if !strings.Contains(stdout.String(), "TXID 0000000000000001") {
		t.Fatalf("output: %s", stdout.String())
	}

	// The same through a config file.
	cfg := filepath.Join(t.TempDir(), "ferry.yml")
	yml := fmt.Sprintf("bucket:\n  type: file\n  path: %s\n  prefix: pfx\n  upload-interval: 2s\n", bucket)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "b.db")
	if err := run(ctx, []string{"restore", "-config", cfg, "-txid", "1", "-o", out2, "tenants/a.db"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if c, err := ReadConfig(cfg); err != nil || c.Bucket.UploadInterval.String() != "2s" {
		t.Fatalf("config: %+v %v", c, err)
	}
}

// TestRestoreQuiet checks that -q prints nothing at all when the restore
// succeeds, and that errors still reach the caller.
func TestRestoreQuiet(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	want := uploadSnapshot(t, bucket, "a.db")
	out := filepath.Join(t.TempDir(), "a.db")

	var stdout, stderr bytes.Buffer
	args := []string{"restore", "-q", "-bucket-type", "file", "-path", bucket, "-prefix", "pfx", "-o", out, "a.db"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored file differs (%v)", err)
	}
	if stdout.Len() != 0 || stderr.Len() != 0 {
		t.Fatalf("-q printed:\nstdout: %q\nstderr: %q", stdout.String(), stderr.String())
	}

	args[len(args)-1] = "missing.db"
	args = append(args, "-f")
	if err := run(ctx, args, &stdout, &stderr); err == nil {
		t.Fatal("restoring a missing database with -q succeeded")
	}
}

func TestRestoreCommandBadInput(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	uploadSnapshot(t, bucket, "a.db")
	existing := filepath.Join(t.TempDir(), "exists.db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(badYAML, []byte("bucket: [unclosed"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.db")
	base := []string{"restore", "-bucket-type", "file", "-path", bucket, "-prefix", "pfx"}
	for _, tc := range []struct {
		args []string
		want string
		is   error
	}{
		{[]string{"a.db"}, "-o FILE is required", nil},
		{[]string{"-o", out}, "exactly one database", nil},
		{[]string{"a.db", "b.db", "-o", out}, "exactly one database", nil},
		{[]string{"../a.db", "-o", out}, "", ferry.ErrInvalidName},
		{[]string{"a.db", "-o", out, "-txid", "zz"}, "invalid TXID", nil},
		{[]string{"a.db", "-o", out, "-txid", "0"}, "invalid TXID", nil},
		{[]string{"a.db", "-o", out, "-timestamp", "yesterday"}, "RFC 3339", nil},
		{[]string{"a.db", "-o", out, "-txid", "1", "-timestamp", "2026-01-01T00:00:00Z"}, "not both", nil},
		{[]string{"a.db", "-o", existing}, "exists", nil},
		{[]string{"missing.db", "-o", out}, "", ferry.ErrDatabaseNotFound},
		{[]string{"a.db", "-o", out, "-txid", "5"}, "not restorable", nil},
		{[]string{"a.db", "-o", out, "-bucket-type", "ftp"}, "want file or s3", nil},
		{[]string{"a.db", "-o", out, "-config", badYAML}, "parse config", nil},
		{[]string{"a.db", "-o", out, "-config", "/nonexistent/ferry.yml"}, "read config", nil},
	} {
		var stdout, stderr bytes.Buffer
		err := run(ctx, append(append([]string{}, base...), tc.args...), &stdout, &stderr)
		switch {
		case err == nil:
			t.Errorf("%v: succeeded", tc.args)
		case tc.is != nil && !errors.Is(err, tc.is):
			t.Errorf("%v: %v; want %v", tc.args, err, tc.is)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%v: %v; want it to mention %q", tc.args, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Fatal("an existing file was overwritten without -f")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed restore left a file behind")
	}
}

func TestBucketConfigEnv(t *testing.T) {
	t.Setenv("BUCKET_NAME", "from-fly")
	t.Setenv("AWS_ENDPOINT_URL_S3", "https://fly.storage.tigris.dev")
	t.Setenv("AWS_REGION", "")
	c := BucketConfig{}.withEnv()
	if c.Type != "s3" || c.Bucket != "from-fly" || c.Endpoint != "https://fly.storage.tigris.dev" || c.Region != "auto" {
		t.Fatalf("withEnv = %+v", c)
	}
	t.Setenv("BUCKET_NAME", "")
	if c := (BucketConfig{}).withEnv(); c.Type != "file" {
		t.Fatalf("default type %q, want file", c.Type)
	}
	if err := (BucketConfig{Type: "s3"}).validate(); err == nil {
		t.Fatal("s3 without a bucket name accepted")
	}
	if err := (BucketConfig{Levels: []BucketLevel{{Level: 2, Interval: 1}, {Level: 1, Interval: 1}}}).validate(); err == nil {
		t.Fatal("descending levels accepted")
	}
	if err := (BucketConfig{Levels: []BucketLevel{{Level: 9, Interval: 1}}}).validate(); err == nil {
		t.Fatal("level 9 accepted as a compaction level")
	}
}

func TestBucketReplicatorOptions(t *testing.T) {
	c := BucketConfig{Prefix: "p", UploadInterval: 2e9, Levels: []BucketLevel{{Level: 1, Interval: 3e9}}, SnapshotInterval: -1, Retention: 5e9}
	o := c.replicatorOptions()
	if o.Prefix != "p" || o.UploadInterval != 2e9 || len(o.Levels) != 1 || o.Levels[0].Interval != 3e9 || o.SnapshotInterval != -1 || o.SnapshotRetention != 5e9 {
		t.Fatalf("replicatorOptions = %+v", o)
	}
}
