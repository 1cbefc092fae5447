package replicate

import (
	"context"
	"errors"
	"testing"
)

// testClaimCluster checks the cluster marker on backend b: the first
// cluster claims a prefix, claims again freely, and another cluster is
// refused there but may claim another prefix. Databases never list it.
func testClaimCluster(t *testing.T, b Backend) {
	ctx := context.Background()
	prod := NewBucket(b, "", nil)
	if err := prod.ClaimCluster(ctx, "prod"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := prod.ClaimCluster(ctx, "prod"); err != nil {
		t.Fatalf("second claim by the same cluster: %v", err)
	}
	err := NewBucket(b, "", nil).ClaimCluster(ctx, "staging")
	if !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("claim by another cluster: %v, want ErrOtherCluster", err)
	}
	t.Logf("refusal: %v", err)
	if err := NewBucket(b, "staging", nil).ClaimCluster(ctx, "staging"); err != nil {
		t.Fatalf("claim of another prefix: %v", err)
	}
	names, err := prod.Databases(ctx)
	if err != nil || len(names) != 0 {
		t.Fatalf("databases %v (%v): the marker must not show as one", names, err)
	}
}

func TestClaimClusterFile(t *testing.T) {
	b, err := NewFileBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testClaimCluster(t, b)
}

func TestClaimClusterS3(t *testing.T) {
	b, _ := newS3Backend(t)
	testClaimCluster(t, b)
}
