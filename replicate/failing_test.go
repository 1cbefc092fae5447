package replicate

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
)

var errBucketDown = errors.New("bucket unreachable")

// failingBackend fails requests on demand, standing in for an outage.
type failingBackend struct {
	Backend
	down        atomic.Bool
	failLTXPuts atomic.Bool
}

func (b *failingBackend) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (string, error) {
	if b.down.Load() || (b.failLTXPuts.Load() && strings.HasSuffix(key, ".ltx")) {
		return "", errBucketDown
	}
	return b.Backend.Put(ctx, key, r, size, opts)
}

func (b *failingBackend) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	if b.down.Load() {
		return nil, ObjectInfo{}, errBucketDown
	}
	return b.Backend.Get(ctx, key)
}

func (b *failingBackend) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if b.down.Load() {
		return nil, errBucketDown
	}
	return b.Backend.List(ctx, prefix)
}
