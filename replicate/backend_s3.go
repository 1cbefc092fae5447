package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config says how to reach an S3-compatible bucket.
type S3Config struct {
	Bucket          string // bucket name
	Endpoint        string // custom endpoint URL; empty for AWS
	Region          string // region; "auto" on Tigris
	ForcePathStyle  bool   // address the bucket as a path, not a host name
	AccessKeyID     string // static credentials; empty to use the SDK's chain
	SecretAccessKey string
	// MaxAttempts bounds the SDK's retries of one request; zero means the
	// SDK's default. The replicator retries on its own schedule anyway.
	MaxAttempts int
}

// S3Backend stores objects in an S3-compatible bucket.
type S3Backend struct {
	client *s3.Client
	bucket string
}

// NewS3Backend returns a backend for the bucket described by cfg.
// Credentials left empty come from the SDK's default chain (environment,
// shared config files, instance roles).
func NewS3Backend(ctx context.Context, cfg S3Config) (*S3Backend, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 backend: bucket name required")
	}
	region := cfg.Region
	if region == "" {
		region = "auto"
	}
	opts := s3.Options{
		Region:       region,
		UsePathStyle: cfg.ForcePathStyle,
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.MaxAttempts > 0 {
		opts.RetryMaxAttempts = cfg.MaxAttempts
	}
	if cfg.AccessKeyID != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")
	} else {
		// The SDK's chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (as
		// `fly storage create` sets them), shared files, instance roles.
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("s3 backend: load AWS configuration: %w", err)
		}
		opts.Credentials = awsCfg.Credentials
		opts.HTTPClient = awsCfg.HTTPClient
	}
	// Only send checksums when the operation demands them: several
	// S3-compatible servers reject the SDK's default trailing checksums.
	opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	return &S3Backend{client: s3.New(opts), bucket: cfg.Bucket}, nil
}

// NewS3BackendFromClient wraps an existing client.
func NewS3BackendFromClient(client *s3.Client, bucket string) *S3Backend {
	return &S3Backend{client: client, bucket: bucket}
}

// Put implements Backend.
func (b *S3Backend) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, opts PutOptions) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(b.bucket),
		Key:           aws.String(key),
		Body:          r,
		ContentLength: aws.Int64(size),
		Metadata:      opts.Metadata,
	}
	if opts.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(opts.IfMatch)
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return "", fmt.Errorf("s3: put %s: %w", key, classifyS3Error(err))
	}
	return aws.ToString(out.ETag), nil
}

// Get implements Backend.
func (b *S3Backend) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("s3: get %s: %w", key, classifyS3Error(err))
	}
	return out.Body, ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
	}, nil
}

// List implements Backend.
func (b *S3Backend) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: aws.String(b.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list %q: %w", prefix, classifyS3Error(err))
		}
		for _, o := range page.Contents {
			out = append(out, ObjectInfo{
				Key:          aws.ToString(o.Key),
				Size:         aws.ToInt64(o.Size),
				ETag:         aws.ToString(o.ETag),
				LastModified: aws.ToTime(o.LastModified),
			})
		}
	}
	return out, nil
}

// Delete implements Backend. It deletes up to 1,000 keys per request.
func (b *S3Backend) Delete(ctx context.Context, keys ...string) error {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		objs := make([]s3types.ObjectIdentifier, n)
		for i, k := range keys[:n] {
			objs[i] = s3types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := b.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(b.bucket),
			Delete: &s3types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("s3: delete %d objects: %w", n, classifyS3Error(err))
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("s3: delete %s: %s: %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		keys = keys[n:]
	}
	return nil
}

// classifyS3Error maps the S3 errors callers act on to this package's
// sentinels, keeping the original for the message.
func classifyS3Error(err error) error {
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) {
		return fmt.Errorf("%w: %w", ErrObjectNotFound, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %w", ErrObjectNotFound, err)
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrObjectNotFound, err)
		case http.StatusPreconditionFailed, http.StatusConflict:
			return fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
		}
	}
	return err
}
