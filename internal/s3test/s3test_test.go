package s3test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestStartPutGetRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String("a/b"), Body: bytes.NewReader([]byte("hello")),
	}); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("a/b")}); err == nil {
		t.Fatal("GET succeeded against a stopped server")
	}
	s.Restart()

	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("a/b")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	if string(b) != "hello" {
		t.Fatalf("got %q after restart", b)
	}
}

func TestConditionalPut(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client()
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.Bucket), Key: aws.String("k"), Body: bytes.NewReader([]byte("x")),
			IfNoneMatch: aws.String("*"),
		})
		return err
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	if err := put(); err == nil {
		t.Fatal("second If-None-Match: * PUT succeeded")
	}
}
