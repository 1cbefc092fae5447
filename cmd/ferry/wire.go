package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/replicate"
)

// startServices connects the store to the replicator, the lease manager
// and the peers configured in cfg: it sets the store's write guard,
// restorer, commit listeners and lease view. It is called after the store
// is created and before it is opened. The returned stop function shuts the
// services down.
func startServices(ctx context.Context, cfg *Config, store *ferry.Store, logger *slog.Logger) (stop func(context.Context) error, err error) {
	dataDir := cfg.Data.Dir
	node, err := cfg.Lease.nodeID()
	if err != nil {
		return nil, err
	}

	backend, err := cfg.Bucket.open(ctx, dataDir)
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	guard := &uploadGuard{node: node}
	opts := cfg.Bucket.replicatorOptions()
	opts.Guard, opts.Node, opts.Logger = guard, node, logger.With("component", "replicate")
	// The peer client starts after the replicator; until then nothing is
	// streamed.
	var following atomic.Pointer[func(string) bool]
	opts.Streamed = func(name string) bool {
		f := following.Load()
		return f != nil && (*f)(name)
	}
	rep := replicate.New(backend, ferry.Layout{Dir: dataDir}, opts)

	mgr, err := cfg.Lease.open(ctx, dataDir, logger, leaseHooks{
		URL: cfg.HTTP.advertiseURL(),
		// A new writer first catches up to the bucket, so a node waking
		// from a long stop never throws newer history away.
		CatchUp: rep.CatchUpFunc(store),
		// A departing writer first stops the application's writers that
		// bypass the store and writes every commit to its local log, then
		// ships what the bucket lacks while its lease is still valid, so
		// the next writer can catch up to it.
		Drain: func(ctx context.Context, name string) error {
			if err := store.FenceWriters(ctx, name); err != nil {
				return err
			}
			return rep.Sync(ctx, name)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open leases: %w", err)
	}
	guard.mgr = mgr

	store.SetWriteGuard(mgr)
	store.SetLeaseView(mgr)
	store.SetRestorer(rep)
	store.AddCommitListener(rep)

	if err := rep.Start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("start replicator: %w", err), mgr.Close())
	}
	stopStatus, err := serveStatus(ctx, cfg.Lease, dataDir, newStatusHandler(statusSources{
		Lease:     mgr,
		Databases: store.DBs,
		LocalPos:  store.LocalPos,
		BucketPos: rep.BucketPos,
		SetAside:  store.SetAside,
		Faults:    store.Faults,
	}), logger)
	if err != nil {
		return nil, errors.Join(err, rep.Close(ctx), mgr.Close())
	}

	stopProxy, err := cfg.Proxy.serve(ctx, node, mgr, store, logger)
	if err != nil {
		return nil, errors.Join(err, stopStatus(), rep.Close(ctx), mgr.Close())
	}
	stopPeers, streamed, isFollowing, err := startPeers(ctx, cfg.HTTP, node, mgr, store, guard, logger)
	if err != nil {
		return nil, errors.Join(err, stopProxy(), stopStatus(), rep.Close(ctx), mgr.Close())
	}
	if isFollowing != nil {
		following.Store(&isFollowing)
	}
	stopFollower := startFollower(ctx, cfg.Bucket.followInterval(), rep, store, guard, streamed, logger)

	return func(ctx context.Context) error {
		// The replicator uploads what is pending while the leases are
		// still held; once released, those uploads would be fenced off.
		stopFollower()
		err := errors.Join(stopPeers(), stopProxy(), stopStatus(), rep.Close(ctx))
		// A lease that cannot be released (say, the Raft quorum is gone)
		// simply expires after its TTL; that is no reason to fail the exit.
		if cerr := mgr.Close(); cerr != nil {
			logger.Warn("leases not released; they expire after their TTL", "err", cerr)
		}
		return err
	}, nil
}

// startFollower keeps the databases this node does not write current with
// the bucket, every interval (zero: never). stop waits for it to end.
func startFollower(ctx context.Context, interval time.Duration, rep *replicate.Replicator, store *ferry.Store, guard *uploadGuard, streamed func(string) bool, logger *slog.Logger) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &replicate.Follower{
		Replicator: rep,
		Applier:    store,
		Databases:  store.DBs,
		Writer:     guard.holds,
		Streamed:   streamed,
		Interval:   interval,
		Logger:     logger.With("component", "follow"),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// uploadGuard fences the replicator's uploads with the lease, but unlike
// the store's guard it never acquires a lease: a node uploads only the
// databases it already writes.
type uploadGuard struct {
	node string
	mgr  lease.Manager
}

// CheckWrite implements ferry.WriteGuard.
func (g *uploadGuard) CheckWrite(ctx context.Context, name string) (uint64, error) {
	if !g.holds(name) {
		return 0, fmt.Errorf("%w: %s's lease is not held by this node", ferry.ErrReadOnly, name)
	}
	return g.mgr.CheckWrite(ctx, name)
}

// holds reports whether this node holds database name's lease.
func (g *uploadGuard) holds(name string) bool {
	holder, _, ok := g.mgr.Holder(name)
	return ok && holder == g.node
}
