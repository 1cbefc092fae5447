// Package s3test runs a real S3 server, versitygw, for tests. Each Start
// gets its own process, port, data directory and bucket, and the server is
// stopped when the test ends.
//
// Under CI=true a missing versitygw binary fails the test; elsewhere it skips
// it, so that `go test` works on a laptop without the S3 tools installed.
// scripts/setup.d/20-s3.sh installs the binary.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Fixed test credentials and region. The region is "auto", as on Tigris.
const (
	AccessKey = "ferrytest"
	SecretKey = "ferrytestsecret"
	Region    = "auto"
)

// startTimeout bounds how long a server may take to accept requests.
const startTimeout = 20 * time.Second

// Server is one running versitygw process.
type Server struct {
	// Endpoint is the server's URL, such as "http://127.0.0.1:41234".
	Endpoint string
	// Bucket is a bucket created for the test.
	Bucket string
	// Dir is the directory that holds the buckets' objects as plain files.
	Dir string
	// AccessKey, SecretKey and Region are the credentials and region to use.
	AccessKey, SecretKey, Region string

	bin  string
	addr string
	t    testing.TB

	mu   sync.Mutex
	proc *os.Process   // nil while stopped
	done chan struct{} // closed when proc has exited
}

// BinaryPath returns the path of the versitygw binary: $PATH first, then
// $GOPATH/bin, where `go install` puts it.
func BinaryPath() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("versitygw not in PATH and no home directory: %w", err)
		}
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found in PATH or %s (run scripts/setup.d/20-s3.sh)", filepath.Dir(p))
	}
	return p, nil
}

// Require fails the test under CI=true and skips it otherwise. Tests call
// it when a real server or tool they need is missing.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("required test dependency missing: %v", err)
	}
	t.Skipf("skipping: %v", err)
}

// Start starts a versitygw server on a free loopback port with a fresh
// data directory and one empty bucket, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := BinaryPath()
	Require(t, err)

	dir := t.TempDir()
	s := &Server{
		Bucket:    "ferry-test",
		Dir:       dir,
		AccessKey: AccessKey,
		SecretKey: SecretKey,
		Region:    Region,
		bin:       bin,
		t:         t,
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + s.addr
	t.Cleanup(s.Stop)

	if err := s.start(); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if err := s.CreateBucket(context.Background(), s.Bucket); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return s
}

// Client returns an S3 client for the server, using path-style addressing.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		// A stopped server must fail fast rather than be retried for long.
		RetryMaxAttempts: 1,
	})
}

// CreateBucket creates another bucket on the server.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %q: %w", name, err)
	}
	return nil
}

// Stop stops the server. Its data directory and port stay reserved for
// Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.done
	s.proc, s.done = nil, nil
}

// Restart starts a stopped server again on the same port and directory,
// with its buckets and objects as they were.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("s3test: restart: %v", err)
	}
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, "--port", s.addr, "--region", s.Region, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	logf, err := os.Create(filepath.Join(s.t.TempDir(), "versitygw.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()

	deadline := time.Now().Add(startTimeout)
	for {
		if ready(s.Endpoint) {
			break
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("versitygw exited before serving (%v): %s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("versitygw did not start serving within " + startTimeout.String())
		}
	}
	s.mu.Lock()
	s.proc, s.done = cmd.Process, done
	s.mu.Unlock()
	return nil
}

// ready reports whether the server answers HTTP at all; any status will do,
// since an unauthenticated request is expected to be refused.
func ready(endpoint string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(endpoint)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before versitygw binds it; that is rare enough on a test
// machine, and then Start fails clearly rather than hanging.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
