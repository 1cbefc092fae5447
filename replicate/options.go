package replicate

import (
	"log/slog"
	"time"

	"github.com/ferrydb/ferry"
)

// Defaults, as in Litestream v0.5 where it has one.
const (
	DefaultUploadInterval    = time.Second
	DefaultSnapshotInterval  = 24 * time.Hour
	DefaultSnapshotRetention = 24 * time.Hour
	DefaultMaxBatchFiles     = 4096
	DefaultConcurrency       = 8
)

// DefaultLevels are the compaction levels above L0: L1 every 30 seconds,
// L2 every 5 minutes and L3 every hour.
var DefaultLevels = []Level{
	{Level: 1, Interval: 30 * time.Second},
	{Level: 2, Interval: 5 * time.Minute},
	{Level: 3, Interval: time.Hour},
}

// Level is one compaction level: every Interval, on the wall-clock
// boundary, the files of the level below are merged into one file here.
type Level struct {
	Level    int
	Interval time.Duration
}

// Options configure a Replicator. Zero values take the defaults above.
type Options struct {
	// Prefix is the key prefix of every object, such as "ferry".
	Prefix string
	// Streamed, if set, reports whether database name reaches this node
	// from another node's peer stream. Local change sets past the
	// bucket's head are then the holder's, which uploads them: this node
	// does not try to.
	Streamed func(name string) bool
	// UploadInterval is how long changes to one database are gathered
	// into one L0 upload. A busy database costs one PUT per interval.
	UploadInterval time.Duration
	// Levels are the compaction levels, ascending, at most level 8.
	Levels []Level
	// SnapshotInterval is how often a snapshot of each database is
	// written to level 9; negative disables snapshots.
	SnapshotInterval time.Duration
	// SnapshotRetention is how long snapshots are kept. The newest
	// snapshot is always kept.
	SnapshotRetention time.Duration
	// MaxBatchFiles bounds how many local LTX files go into one upload.
	MaxBatchFiles int
	// Concurrency is how many databases are uploaded at once.
	Concurrency int
	// UploadTimeout bounds one database's upload round, so that a bucket
	// that accepts connections but never answers cannot stall uploads.
	// Zero means one minute.
	UploadTimeout time.Duration
	// PendingGrace is how long a new writer waits for an upload that an
	// earlier writer announced in the head but never completed before
	// declaring it lost. It must exceed the other nodes' UploadTimeout, so
	// that the earlier writer's request has certainly ended. Zero means
	// two minutes.
	PendingGrace time.Duration
	// Guard gives the lease epoch that uploads carry. Nil means a single
	// node that always writes under epoch 0.
	Guard ferry.WriteGuard
	// Node names this node in the head object, for operators.
	Node string
	// Logger receives the replicator's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.UploadInterval <= 0 {
		o.UploadInterval = DefaultUploadInterval
	}
	if o.Levels == nil {
		o.Levels = DefaultLevels
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	if o.SnapshotRetention <= 0 {
		o.SnapshotRetention = DefaultSnapshotRetention
	}
	if o.MaxBatchFiles <= 0 {
		o.MaxBatchFiles = DefaultMaxBatchFiles
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.UploadTimeout <= 0 {
		o.UploadTimeout = time.Minute
	}
	if o.PendingGrace <= 0 {
		o.PendingGrace = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
