package main

import "testing"

// TestFlyExampleConfig keeps the shipped Fly.io config loadable.
func TestFlyExampleConfig(t *testing.T) {
	t.Setenv("BUCKET_NAME", "tenants")
	t.Setenv("AWS_ENDPOINT_URL_S3", "https://fly.storage.tigris.dev")
	t.Setenv("APP_COMMAND", "/app/server")
	t.Setenv("FLY_APP_NAME", "tenants-app")
	cfg, err := ReadConfig("../../docs/examples/fly-ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Lease.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.ID != "tenants-app" || cfg.Cluster.secretEnv() != defaultSecretEnv {
		t.Fatalf("cluster section: %+v", cfg.Cluster)
	}
	if cfg.Lease.Type != "s3" || cfg.Lease.S3.Bucket != "tenants" || cfg.Proxy.DBHeader != "X-Tenant-DB" || len(cfg.Exec) == 0 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
}
