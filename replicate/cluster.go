package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// clusterName is the object, at the top of the bucket's prefix, that
// records which cluster writes there. No database's listing sees it: a
// database's objects are at least two levels below the prefix.
const clusterName = "ferry-cluster.json"

// ErrOtherCluster means the bucket's prefix is claimed by another cluster.
var ErrOtherCluster = errors.New("bucket belongs to another cluster")

// clusterMarker is the content of the cluster object.
type clusterMarker struct {
	ID string `json:"id"`
}

func (k keys) cluster() string {
	if k.prefix == "" {
		return clusterName
	}
	return k.prefix + "/" + clusterName
}

// ClaimCluster records that cluster id writes under the bucket's prefix,
// unless it is recorded already. It fails with ErrOtherCluster when
// another ID is recorded: two clusters writing one prefix would each
// take the other's history for their own.
func (bk *Bucket) ClaimCluster(ctx context.Context, id string) error {
	key := bk.keys.cluster()
	for range 2 { // a second pass reads what a concurrent claim wrote
		rc, _, err := bk.backend.Get(ctx, key)
		if err == nil {
			data, rerr := io.ReadAll(io.LimitReader(rc, maxHeadSize))
			rc.Close()
			if rerr != nil {
				return fmt.Errorf("read %s: %w", key, rerr)
			}
			var m clusterMarker
			if err := json.Unmarshal(data, &m); err != nil {
				return fmt.Errorf("read %s: %w", key, err)
			}
			if m.ID != id {
				return fmt.Errorf("%w: %s records cluster %q, and this node is in cluster %q (give each cluster its own bucket.prefix)", ErrOtherCluster, key, m.ID, id)
			}
			return nil
		}
		if !errors.Is(err, ErrObjectNotFound) {
			return fmt.Errorf("read %s: %w", key, err)
		}
		data, _ := json.Marshal(clusterMarker{ID: id})
		_, err = bk.backend.Put(ctx, key, bytes.NewReader(data), int64(len(data)), PutOptions{IfNoneMatch: true})
		if err == nil {
			bk.logger.Info("claimed bucket prefix for cluster", "key", key, "cluster", id)
			return nil
		}
		if !errors.Is(err, ErrPreconditionFailed) {
			return fmt.Errorf("write %s: %w", key, err)
		}
	}
	return fmt.Errorf("claim %s: written and removed concurrently", key)
}

// ClaimCluster is Bucket.ClaimCluster on the replicator's bucket.
func (r *Replicator) ClaimCluster(ctx context.Context, id string) error {
	return r.bucket.ClaimCluster(ctx, id)
}
