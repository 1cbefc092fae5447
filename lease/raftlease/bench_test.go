package raftlease

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/peerauth"
)

// BenchmarkCheckWriteHeld measures the write path's lease check while the
// lease is held: it runs before every database write.
func BenchmarkCheckWriteHeld(b *testing.B) {
	m, err := Open(context.Background(), Config{Node: "solo", Bind: "127.0.0.1:0", TTL: 10 * time.Second,
		HeartbeatTimeout: testElection, ElectionTimeout: testElection})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.CheckWrite(ctx, "bench.db"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.CheckWrite(ctx, "bench.db"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAcquireRelease measures a full grant and release through the
// Raft log of a single node with raft-boltdb on disk.
func BenchmarkAcquireRelease(b *testing.B) {
	m, err := Open(context.Background(), Config{Node: "solo", Bind: "127.0.0.1:0", Dir: b.TempDir(), TTL: 10 * time.Second,
		HeartbeatTimeout: testElection, ElectionTimeout: testElection})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.CheckWrite(ctx, "warm.db"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Acquire(ctx, "bench.db"); err != nil {
			b.Fatal(err)
		}
		if err := m.Release(ctx, "bench.db"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlainDiskTwoFsyncs is the baseline for BenchmarkAcquireRelease:
// two small durable writes to a plain file in the same kind of directory,
// the least any durable grant-and-release could cost.
func BenchmarkPlainDiskTwoFsyncs(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 128)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 2; j++ {
			if _, err := f.WriteAt(buf, int64(j*len(buf))); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkLeaseRequest measures one lease request over the Raft port (a
// new connection, as every forwarded request opens one), without and with
// cluster auth, whose hello frame and secret check the difference is.
func BenchmarkLeaseRequest(b *testing.B) {
	auth, err := peerauth.New("bench", "bench-cluster-secret-0123", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		auth *peerauth.Auth
	}{{"plain", nil}, {"auth", auth}} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := Open(context.Background(), Config{Node: "solo", Bind: "127.0.0.1:0", TTL: 10 * time.Second,
				HeartbeatTimeout: testElection, ElectionTimeout: testElection, Auth: bc.auth})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			if _, err := m.CheckWrite(ctx, "warm.db"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.exchange(ctx, m.addr, rpcRequest{Op: rpcHealth}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
