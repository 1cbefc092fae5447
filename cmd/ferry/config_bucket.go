package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/replicate"
)

// BucketConfig is the config's bucket section: where change sets are
// shipped and restored from.
//
//	bucket:
//	  type: s3
//	  bucket: my-ferry-bucket
//	  endpoint: https://fly.storage.tigris.dev
//	  prefix: ferry
//	  upload-interval: 1s
//	  levels:
//	    - {level: 1, interval: 30s}
//	    - {level: 2, interval: 5m}
//	    - {level: 3, interval: 1h}
//	  snapshot-interval: 24h
//	  retention: 24h
//
// On Fly.io `fly storage create` sets BUCKET_NAME, AWS_ENDPOINT_URL_S3,
// AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; with those set,
// the section can be left out entirely. Credentials are only ever read
// from the environment (or the AWS SDK's usual files and roles), never
// from the config file.
type BucketConfig struct {
	// Type is "file" (a local directory stands in for the bucket; the
	// default when no bucket name is set anywhere) or "s3" (any
	// S3-compatible store: Tigris, AWS, MinIO, versitygw...).
	Type string `yaml:"type"`

	// Path is the file backend's directory. Default: "bucket" under the
	// data directory.
	Path string `yaml:"path"`

	// Bucket is the S3 bucket name. Default: $BUCKET_NAME.
	Bucket string `yaml:"bucket"`

	// Endpoint is the S3 endpoint URL. Default: $AWS_ENDPOINT_URL_S3, else
	// AWS itself.
	Endpoint string `yaml:"endpoint"`

	// Region is the bucket's region. Default: $AWS_REGION, else "auto"
	// (what Tigris expects).
	Region string `yaml:"region"`

	// ForcePathStyle addresses the bucket in the URL path instead of the
	// host name, as MinIO and versitygw need. Default false.
	ForcePathStyle bool `yaml:"force-path-style"`

	// Prefix is put before every key, so one bucket can serve several
	// clusters. Default: none.
	Prefix string `yaml:"prefix"`

	// UploadInterval is how long a database's changes are gathered into
	// one upload: a busy database costs about one upload per interval, an
	// idle one nothing. Default 1s.
	UploadInterval time.Duration `yaml:"upload-interval"`

	// Levels are the compaction levels above L0, each merging the level
	// below on its interval's wall-clock boundary. Levels 1 to 8.
	// Default: L1 every 30s, L2 every 5m, L3 every 1h.
	Levels []BucketLevel `yaml:"levels"`

	// FollowInterval is how often a node checks the bucket for news of
	// each database it does not write, and applies it, so that reads on
	// replicas stay current. Each check of an unchanged database costs
	// one GET. Default 5s; a negative value disables following.
	FollowInterval time.Duration `yaml:"follow-interval"`

	// SnapshotInterval is how often a full snapshot of each database is
	// written (level 9). Default 24h; a negative value disables snapshots.
	SnapshotInterval time.Duration `yaml:"snapshot-interval"`

	// Retention is how long snapshots are kept; the newest is always kept,
	// and compacted files older than the oldest kept snapshot are
	// deleted. It bounds how far back a restore to a timestamp can go.
	// Default 24h.
	Retention time.Duration `yaml:"retention"`

	// Synchronous lists the databases whose commits return only once
	// their change set is in the bucket, as patterns of path.Match over
	// the database's name in the mount ("*" does not cross a "/"):
	// ["orders.db", "tenants/*.db"]. A failover then loses nothing
	// acknowledged, at the cost of an upload's round trip per commit.
	// While the bucket cannot be reached, such commits wait. In WAL mode
	// this needs PRAGMA synchronous=FULL, since the wait is in the WAL's
	// sync. Default: none.
	Synchronous []string `yaml:"synchronous"`
}

// isSynchronous reports whether database name matches Synchronous.
func (c BucketConfig) isSynchronous(name string) bool {
	for _, p := range c.Synchronous {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// BucketLevel is one compaction level.
type BucketLevel struct {
	// Level is the level number, 1 to 8.
	Level int `yaml:"level"`
	// Interval is how often the level below is merged into it.
	Interval time.Duration `yaml:"interval"`
}

// withEnv fills what the config leaves unset from the environment that
// `fly storage create` sets up.
func (c BucketConfig) withEnv() BucketConfig {
	if c.Bucket == "" {
		c.Bucket = os.Getenv("BUCKET_NAME")
	}
	if c.Endpoint == "" {
		c.Endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_REGION")
	}
	if c.Region == "" {
		c.Region = "auto"
	}
	if c.Type == "" {
		c.Type = "file"
		if c.Bucket != "" {
			c.Type = "s3"
		}
	}
	return c
}

// validate reports the first problem with the section.
func (c BucketConfig) validate() error {
	c = c.withEnv()
	switch c.Type {
	case "file":
	case "s3":
		if c.Bucket == "" {
			return errors.New("bucket.bucket (or $BUCKET_NAME) is required for bucket type s3")
		}
	default:
		return fmt.Errorf("bucket.type %q: want file or s3", c.Type)
	}
	if c.UploadInterval < 0 {
		return fmt.Errorf("bucket.upload-interval %s is negative", c.UploadInterval)
	}
	if c.Retention < 0 {
		return fmt.Errorf("bucket.retention %s is negative", c.Retention)
	}
	for _, p := range c.Synchronous {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("bucket.synchronous: pattern %q: %w", p, err)
		}
	}
	prev := 0
	for _, lv := range c.Levels {
		if lv.Level <= prev || lv.Level >= replicate.SnapshotLevel {
			return fmt.Errorf("bucket.levels: level %d must be above %d and below %d", lv.Level, prev, replicate.SnapshotLevel)
		}
		if lv.Interval <= 0 {
			return fmt.Errorf("bucket.levels: level %d needs a positive interval", lv.Level)
		}
		prev = lv.Level
	}
	return nil
}

// open returns the backend the section describes. dataDir is the data
// directory, under which the file backend lives by default.
func (c BucketConfig) open(ctx context.Context, dataDir string) (replicate.Backend, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c = c.withEnv()
	if c.Type == "file" {
		path := c.Path
		if path == "" {
			if dataDir == "" {
				return nil, errors.New("bucket.path is required for the file backend without a data directory")
			}
			path = filepath.Join(dataDir, "bucket")
		}
		return replicate.NewFileBackend(path)
	}
	return replicate.NewS3Backend(ctx, replicate.S3Config{
		Bucket:         c.Bucket,
		Endpoint:       c.Endpoint,
		Region:         c.Region,
		ForcePathStyle: c.ForcePathStyle,
	})
}

// replicatorOptions returns the replicator's settings from the section;
// the caller adds the guard, node name and logger.
func (c BucketConfig) replicatorOptions() replicate.Options {
	opts := replicate.Options{
		Prefix:            c.Prefix,
		UploadInterval:    c.UploadInterval,
		SnapshotInterval:  c.SnapshotInterval,
		SnapshotRetention: c.Retention,
	}
	for _, lv := range c.Levels {
		opts.Levels = append(opts.Levels, replicate.Level{Level: lv.Level, Interval: lv.Interval})
	}
	return opts
}

// DefaultFollowInterval is bucket.follow-interval's default.
const DefaultFollowInterval = 5 * time.Second

// followInterval returns follow-interval with its default; zero means
// following is off.
func (c BucketConfig) followInterval() time.Duration {
	switch {
	case c.FollowInterval < 0:
		return 0
	case c.FollowInterval == 0:
		return DefaultFollowInterval
	}
	return c.FollowInterval
}
