package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/s3test"
	"github.com/ferrydb/ferry/replicate"
)

// TestRestoreCommandS3 restores from a real S3 server with the bucket
// given as flags and the credentials in the environment, as on Fly.io.
func TestRestoreCommandS3(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	// Upload through a file bucket, then copy its objects to S3 under the
	// same keys: only the file backend's tree differs.
	dir := t.TempDir()
	want := uploadSnapshot(t, dir, "eu/t1.db")
	fb, err := replicate.NewFileBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := fb.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := replicate.NewS3Backend(ctx, replicate.S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		rc, _, err := fb.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Put(ctx, o.Key, bytes.NewReader(data), int64(len(data)), replicate.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	t.Setenv("BUCKET_NAME", srv.Bucket)
	t.Setenv("AWS_REGION", "auto")
	out := filepath.Join(t.TempDir(), "t1.db")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"restore", "-force-path-style", "-prefix", "pfx", "-o", out, "eu/t1.db"}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored file differs (%v)", err)
	}
	// Wrong credentials: a clear error, no file.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	out2 := filepath.Join(t.TempDir(), "t2.db")
	if err := run(ctx, []string{"restore", "-force-path-style", "-prefix", "pfx", "-o", out2, "eu/t1.db"}, &stdout, &stderr); err == nil {
		t.Fatal("restore with a wrong secret succeeded")
	}
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("failed restore left a file")
	}
}

func TestRestoreProgress(t *testing.T) {
	var buf bytes.Buffer
	p := progressPrinter(&buf)
	p(1, 100) // small: silent
	if buf.Len() != 0 {
		t.Fatalf("progress for a small database: %q", buf.String())
	}
	const total = 100 << 20
	for done := int64(0); done <= total; done += total / 50 {
		p(done, total)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 11 || !strings.Contains(lines[10], "100%") {
		t.Fatalf("progress lines: %q", lines)
	}
}
