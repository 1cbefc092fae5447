package main

import (
	"context"
	"log/slog"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/peer"
)

// startPeers serves this node's peer stream on the http section's address
// and streams the databases this node reads from their holders. streamed
// reports which databases arrive by stream now, so that the bucket
// follower leaves them alone, and following which databases come from
// another node's stream at all, which the replicator does not upload.
// Without a lease backend that publishes
// nodes' URLs, every database is followed through the bucket.
func startPeers(ctx context.Context, cfg HTTPConfig, node string, mgr lease.Manager, store *ferry.Store, guard *uploadGuard, logger *slog.Logger) (stop func() error, streamed, following func(string) bool, err error) {
	logger = logger.With("component", "peer")
	srv := &peer.Server{Source: store, Holds: guard.holds, Logger: logger}
	stopHTTP, err := cfg.serve(srv, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	locator, ok := mgr.(lease.PeerLocator)
	if !ok {
		return stopHTTP, nil, nil, nil
	}
	client := peer.NewClient(peer.ClientOptions{
		Sink: store,
		Holder: func(name string) (string, bool) {
			holder, _, ok := mgr.Holder(name)
			if !ok || holder == node {
				return "", false
			}
			return locator.PeerURL(holder)
		},
		Databases: store.DBs,
		Node:      node,
		Logger:    logger,
	})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Run(ctx)
	}()
	return func() error {
		cancel()
		<-done
		return stopHTTP()
	}, client.Live, client.Following, nil
}
