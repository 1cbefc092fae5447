package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const flyExample = "../../docs/examples/fly-ferry.yml"

// TestFlyExampleConfig keeps the shipped Fly.io config loadable.
func TestFlyExampleConfig(t *testing.T) {
	t.Setenv("BUCKET_NAME", "tenants")
	t.Setenv("AWS_ENDPOINT_URL_S3", "https://fly.storage.tigris.dev")
	t.Setenv("APP_COMMAND", "/app/counter")
	t.Setenv("FLY_APP_NAME", "tenants-app")
	cfg, err := ReadConfig(flyExample)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Lease.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.ID != "tenants-app" || cfg.Cluster.secretEnv() != defaultSecretEnv {
		t.Fatalf("cluster section: %+v", cfg.Cluster)
	}
	if cfg.Lease.Type != "s3" || cfg.Lease.S3.Bucket != "tenants" || len(cfg.Proxy.Routes) != 1 || len(cfg.Exec) == 0 ||
		cfg.FUSE.Dir != "/litefs" || cfg.Proxy.HealthPath != "/health" || cfg.Metrics.Addr == "" {
		t.Fatalf("unexpected config: %+v", cfg)
	}
}

// TestFlyExampleRaftAlternative loads the config with its commented-out
// Raft lease section in place of the S3 one, so that the documented
// alternative stays valid too.
func TestFlyExampleRaftAlternative(t *testing.T) {
	t.Setenv("APP_COMMAND", "/app/counter")
	t.Setenv("FLY_APP_NAME", "ferry-example")
	t.Setenv("FLY_PRIVATE_IP", "fdaa:0:1::2")
	b, err := os.ReadFile(flyExample)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	s3 := regexp.MustCompile(`(?m)^lease:\n(?:  .*\n)+`)
	raft := regexp.MustCompile(`(?m)^# lease:\n(?:#   .*\n)+`)
	block := raft.FindString(text)
	if block == "" || s3.FindString(text) == "" {
		t.Fatal("the example no longer has both lease sections")
	}
	uncommented := regexp.MustCompile(`(?m)^# ?`).ReplaceAllString(block, "")
	alt := strings.Replace(s3.ReplaceAllString(text, ""), block, uncommented, 1)
	path := filepath.Join(t.TempDir(), "ferry.yml")
	if err := os.WriteFile(path, []byte(alt), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadConfig(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, alt)
	}
	if err := cfg.Lease.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Lease.Type != "raft" || cfg.Lease.Raft.Discovery != "ferry-example.internal" {
		t.Fatalf("unexpected lease: %+v", cfg.Lease)
	}
}
