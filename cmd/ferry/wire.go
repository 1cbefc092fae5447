package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/metrics"
	"github.com/ferrydb/ferry/replicate"
	"github.com/ferrydb/ferry/router"
	"github.com/ferrydb/ferry/status"
)

// startServices connects the store to the replicator, the lease manager
// and the peers configured in cfg: it sets the store's write guard,
// restorer, commit listeners and lease view. It is called after the store
// is created and before it is opened. The returned stop function shuts the
// services down; the metrics count the mount's requests too.
func startServices(ctx context.Context, cfg *Config, store *ferry.Store, logger *slog.Logger) (stop func(context.Context) error, m *metrics.Metrics, err error) {
	dataDir := cfg.Data.Dir
	node, err := cfg.Lease.nodeID()
	if err != nil {
		return nil, nil, err
	}

	backend, err := cfg.Bucket.open(ctx, dataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("open bucket: %w", err)
	}
	guard := lease.NewUploadGuard(node)
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

	// Raft listens for peers, so it must not start open to anyone who
	// can reach its port; other lease types use cluster auth only when
	// it is configured (the status endpoint).
	authLog := logger.With("component", "cluster-auth")
	auth, err := cfg.Cluster.auth(os.LookupEnv, authLog)
	if err == nil && cfg.Lease.Type == "raft" {
		auth, err = cfg.Cluster.requireAuth("lease type raft", os.LookupEnv, authLog)
	}
	if err != nil {
		return nil, nil, err
	}

	if auth != nil {
		if err := claimBucket(ctx, rep, auth.ClusterID(), logger); err != nil {
			return nil, nil, err
		}
	}

	mgr, err := cfg.Lease.open(ctx, dataDir, logger, leaseHooks{
		Auth: auth,
		URL:  cfg.HTTP.advertiseURL(),
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
		return nil, nil, fmt.Errorf("open leases: %w", err)
	}
	guard.Bind(mgr)

	m = metrics.New(metrics.Sources{
		Node:      node,
		Databases: store.DBs,
		LocalPos:  store.LocalPos,
		Bucket:    func() metrics.BucketStats { return bucketStats(rep.Stats()) },
		Commits:   store.CommitStats,
		Holder:    mgr.Holder,
	})
	stopWatch := mgr.Watch(func(ev lease.Event) { m.LeaseChanged(ev.Name, ev.Holder, ev.Epoch) })
	defer func() {
		if err != nil {
			stopWatch()
		}
	}()

	store.SetWriteGuard(mgr)
	store.SetLeaseView(mgr)
	store.SetRestorer(m.WrapRestorer(rep))
	if len(cfg.Bucket.Synchronous) > 0 {
		store.SetDurableWaiter(rep, cfg.Bucket.isSynchronous)
	}
	store.AddCommitListener(rep)

	if err := rep.Start(ctx); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("start replicator: %w", err), mgr.Close())
	}
	var status http.Handler = status.NewHandler(statusSources{
		Lease:     mgr,
		Databases: store.DBs,
		LocalPos:  store.LocalPos,
		BucketPos: rep.BucketPos,
		// The bucket's head is, for now, what this node knows of the
		// holder's newest commit.
		HolderHead: rep.BucketHead,
		CommitTime: store.CommitTime,
		SetAside:   store.SetAside,
		Faults:     store.Faults,
	})
	if auth != nil {
		// The endpoint can move leases: with cluster auth it answers
		// only requests that carry the cluster's credentials.
		status = auth.Handler(status)
	}
	stopStatus, err := serveStatus(ctx, cfg.Lease, dataDir, status, logger)
	if err != nil {
		return nil, nil, errors.Join(err, rep.Close(ctx), mgr.Close())
	}

	stopMetrics, err := cfg.Metrics.serve(ctx, m, logger)
	if err != nil {
		return nil, nil, errors.Join(err, stopStatus(), rep.Close(ctx), mgr.Close())
	}
	stopProxy, err := cfg.Proxy.serve(ctx, proxyDeps{
		node: node, leases: mgr, positions: store, logger: logger,
		observe: func(d router.Decision) { m.ObserveDecision(string(d)) },
		health:  m.HealthHandler(cfg.Metrics.maxLag()),
		// Every request one node's proxy forwards to another's goes
		// through this transport: the one place to authenticate nodes to
		// each other.
		peerTransport: http.DefaultTransport,
		auth:          auth,
	})
	if err != nil {
		return nil, nil, errors.Join(err, stopMetrics(), stopStatus(), rep.Close(ctx), mgr.Close())
	}
	stopPeers, streamed, isFollowing, err := startPeers(ctx, cfg.HTTP, node, mgr, store, guard, auth, logger)
	if err != nil {
		return nil, nil, errors.Join(err, stopProxy(), stopMetrics(), stopStatus(), rep.Close(ctx), mgr.Close())
	}
	if isFollowing != nil {
		following.Store(&isFollowing)
	}
	stopFollower := startFollower(ctx, cfg.Bucket.followInterval(), rep, store, guard, streamed, logger)

	return func(ctx context.Context) error {
		// The replicator uploads what is pending while the leases are
		// still held; once released, those uploads would be fenced off.
		stopFollower()
		stopWatch()
		err := errors.Join(stopPeers(), stopProxy(), stopMetrics(), stopStatus(), rep.Close(ctx))
		// A lease that cannot be released (say, the Raft quorum is gone)
		// simply expires after its TTL; that is no reason to fail the exit.
		if cerr := mgr.Close(); cerr != nil {
			logger.Warn("leases not released; they expire after their TTL", "err", cerr)
		}
		return err
	}, m, nil
}

// startFollower keeps the databases this node does not write current with
// the bucket, every interval (zero: never). stop waits for it to end.
func startFollower(ctx context.Context, interval time.Duration, rep *replicate.Replicator, store *ferry.Store, guard *lease.UploadGuard, streamed func(string) bool, logger *slog.Logger) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &replicate.Follower{
		Replicator: rep,
		Applier:    store,
		// Empty candidates too: one opened here before this node heard
		// that another node created the database stands in for it until
		// the bucket's copy is applied over it.
		Databases: func() []string { return append(store.DBs(), store.Candidates()...) },
		Writer:    guard.Holds,
		Streamed:  streamed,
		Interval:  interval,
		Logger:    logger.With("component", "follow"),
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

// claimTimeout bounds the check of the bucket's cluster marker at start.
const claimTimeout = 10 * time.Second

// claimBucket records cluster id in the bucket, or fails when the bucket
// records another: two clusters must never write one bucket prefix. A
// bucket that cannot be reached does not stop the start, as it does not
// for uploads, which retry; the marker is then checked at the next start.
func claimBucket(ctx context.Context, rep *replicate.Replicator, id string, logger *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	err := rep.ClaimCluster(cctx, id)
	switch {
	case errors.Is(err, replicate.ErrOtherCluster):
		return err
	case err != nil:
		logger.Warn("could not check which cluster the bucket belongs to", "cluster", id, "err", err)
	}
	return nil
}

// bucketStats is the replicator's counters as the metrics take them.
func bucketStats(st replicate.Stats) metrics.BucketStats {
	b := metrics.BucketStats{
		Puts: st.Puts, Gets: st.Gets, Lists: st.Lists, Deletes: st.Deletes,
		BytesUp: st.BytesUp, BytesDown: st.BytesDown,
		Databases: make(map[string]metrics.DBStats, len(st.Databases)),
	}
	for _, db := range st.Databases {
		b.Databases[db.Name] = metrics.DBStats{BucketPos: db.BucketPos, Uploads: db.Uploads, UploadErrors: db.UploadErrors}
	}
	return b
}
