package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrydb/ferry"
)

// Follow brings a database this node reads but does not write up to the
// bucket. It costs one GET of the database's head object when nothing is
// new, so a replica can poll hundreds of idle tenants cheaply; only when
// the head is ahead of the local position does it download and apply the
// missing change sets. It reports whether anything was applied.
func (r *Replicator) Follow(ctx context.Context, name string, applier ferry.Applier) (ferry.Pos, bool, error) {
	local, err := applier.LocalPos(name)
	if err != nil {
		return ferry.Pos{}, false, fmt.Errorf("follow %s: %w", name, err)
	}
	h, _, ok, err := readHead(ctx, r.bucket.backend, r.bucket.keys.head(name))
	if err != nil {
		return local, false, fmt.Errorf("follow %s: %w", name, err)
	}
	if ok && h.TXID > 0 {
		// Recorded before catching up, so that status shows how far
		// behind this node is even while the catch-up fails or waits.
		r.setBucketHead(r.get(name), ferry.Pos{TXID: h.TXID, PostApplyChecksum: h.Checksum}, h.Time)
	}
	if !ok || (h.TXID <= local.TXID && !r.bucket.mayDiverge(name, applier, local, h)) {
		return local, false, nil
	}
	pos, err := r.CatchUp(ctx, name, applier)
	if err != nil {
		return local, false, fmt.Errorf("follow %s: %w", name, err)
	}
	return pos, pos != local, nil
}

// Follower keeps a node's read-only databases current by polling the
// bucket (see Replicator.Follow).
type Follower struct {
	// Replicator reads the bucket.
	Replicator *Replicator
	// Applier applies what the bucket holds to the local databases.
	Applier ferry.Applier
	// Databases lists the local databases.
	Databases func() []string
	// Writer reports whether this node writes a database; those are
	// skipped, since their history is made here.
	Writer func(name string) bool
	// Streamed, if set, reports whether a database arrives from its
	// holder's peer stream now; those are skipped too, and followed here
	// again as soon as the stream is lost.
	Streamed func(name string) bool
	// Interval is the time between polls of each database.
	Interval time.Duration
	// Logger receives errors; one failing database does not stop the
	// others.
	Logger *slog.Logger
}

// Run polls until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range f.Databases() {
			if ctx.Err() != nil {
				return
			}
			if f.Writer(name) || (f.Streamed != nil && f.Streamed(name)) {
				continue
			}
			pos, applied, err := f.Replicator.Follow(ctx, name, f.Applier)
			switch {
			case err != nil && ctx.Err() == nil:
				f.Logger.Warn("follow bucket", "db", name, "err", err)
			case applied:
				f.Logger.Debug("followed bucket", "db", name, "pos", pos)
			}
		}
	}
}
