package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/peerauth"
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
func startPeers(ctx context.Context, cfg HTTPConfig, node string, mgr lease.Manager, store *ferry.Store, guard *lease.UploadGuard, auth *peerauth.Auth, logger *slog.Logger) (stop func() error, streamed, following func(string) bool, err error) {
	logger = logger.With("component", "peer")
	var srv http.Handler = &peer.Server{Source: store, Holds: guard.Holds, Logger: logger}
	httpClient := &http.Client{}
	if auth != nil {
		// Only members of the cluster may read its databases, and a
		// replica takes change sets only from one.
		srv = auth.Handler(srv)
		httpClient.Transport = auth.Transport(nil)
	}
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
		HTTP: httpClient,
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
	if bucket := store.Restorer(); bucket != nil {
		store.SetRestorer(holderRestorer{bucket: bucket, client: client, logger: logger})
	}
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

// holderRestorer restores a database from the bucket and, when the bucket
// has none yet (its holder has not uploaded it), from its holder, so that
// opening it on a reader right after it was created finds it.
type holderRestorer struct {
	bucket ferry.Restorer
	client *peer.Client
	logger *slog.Logger
}

// Restore implements ferry.Restorer.
func (h holderRestorer) Restore(ctx context.Context, name, path string) (ferry.Pos, error) {
	pos, err := h.bucket.Restore(ctx, name, path)
	if !errors.Is(err, ferry.ErrDatabaseNotFound) {
		return pos, err
	}
	hpos, ferr := h.client.Fetch(ctx, name, path)
	if ferr != nil {
		if !errors.Is(ferr, ferry.ErrDatabaseNotFound) {
			h.logger.Warn("database not in the bucket, and its holder could not send it", "db", name, "err", ferr)
		}
		return pos, err
	}
	h.logger.Info("fetched database from its holder; the bucket has none yet", "db", name, "pos", hpos)
	return hpos, nil
}
