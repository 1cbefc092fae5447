package replicate

import (
	"context"
	"io"
)

// countingBackend counts requests and bytes for Stats.
type countingBackend struct {
	Backend
	c *counters
}

func (b countingBackend) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (string, error) {
	b.c.puts.Add(1)
	etag, err := b.Backend.Put(ctx, key, r, size, opts)
	if err == nil {
		b.c.bytesUp.Add(size)
	}
	return etag, err
}

func (b countingBackend) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	b.c.gets.Add(1)
	rc, info, err := b.Backend.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	return countingReader{rc, b.c}, info, nil
}

func (b countingBackend) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	b.c.lists.Add(1)
	return b.Backend.List(ctx, prefix)
}

func (b countingBackend) Delete(ctx context.Context, keys ...string) error {
	b.c.deletes.Add(int64(len(keys)))
	return b.Backend.Delete(ctx, keys...)
}

type countingReader struct {
	io.ReadCloser
	c *counters
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.bytesDown.Add(int64(n))
	return n, err
}
