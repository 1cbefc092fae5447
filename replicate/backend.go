package replicate

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors returned by every Backend. Callers match them with errors.Is.
var (
	// ErrObjectNotFound is returned for a key the bucket does not hold.
	ErrObjectNotFound = errors.New("object not found")

	// ErrPreconditionFailed is returned when a conditional write is
	// refused: the object exists although IfNoneMatch was set, or its ETag
	// differs from IfMatch.
	ErrPreconditionFailed = errors.New("precondition failed")
)

// Backend is an object store: an S3-compatible bucket or a local directory.
// Keys are slash-separated. Implementations must be safe for concurrent use.
type Backend interface {
	// Put stores size bytes read from r under key, subject to opts'
	// conditions, and returns the new object's ETag.
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (etag string, err error)

	// Get opens the object under key. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)

	// List returns every object whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)

	// Delete removes the objects under keys. Missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
}

// PutOptions are the conditions and metadata of one Put.
type PutOptions struct {
	// IfNoneMatch makes the write fail unless no object exists under the key.
	IfNoneMatch bool
	// IfMatch, when set, makes the write fail unless the object's current
	// ETag equals it.
	IfMatch string
	// Metadata is stored with the object (S3 user metadata).
	Metadata map[string]string
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}
