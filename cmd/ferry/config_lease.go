package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrydb/ferry/internal/peerauth"
	"github.com/ferrydb/ferry/lease"
	"github.com/ferrydb/ferry/lease/raftlease"
	"github.com/ferrydb/ferry/lease/s3lease"
)

// LeaseConfig is the config's lease section: who may write which database.
//
//	lease:
//	  type: raft
//	  ttl: 10s
//	  preferred:
//	    - {pattern: "eu/*", region: ams}
//	  raft:
//	    bind: 127.0.0.1:20202
//	    peers: [127.0.0.2:20202, 127.0.0.3:20202]
type LeaseConfig struct {
	// Type is how leases are granted: "static" (a fixed primary; the
	// default, right for a single node), "raft" (a lease table replicated
	// between the nodes) or "s3" (a lease object per database in a bucket,
	// for machines that scale to zero and cannot keep a Raft quorum).
	Type string `yaml:"type"`

	// Node is this node's ID, unique in the cluster and stable across
	// restarts. Default: $FLY_MACHINE_ID, else the hostname.
	Node string `yaml:"node"`

	// Region is this node's region, for placement. Default: $FLY_REGION.
	Region string `yaml:"region"`

	// TTL is how long a lease lasts without renewal; a dead holder's
	// databases become writable elsewhere after it. Holders renew every
	// TTL/4 and stop writing TTL/5 before expiry. Default 10s.
	TTL time.Duration `yaml:"ttl"`

	// AcquireTimeout bounds how long a write waits to acquire a lease
	// before failing as read-only. Default 5s.
	AcquireTimeout time.Duration `yaml:"acquire-timeout"`

	// Candidates lists the node IDs that may hold leases; CandidateRegions
	// the regions whose nodes may. Both empty: every node may.
	Candidates       []string `yaml:"candidates"`
	CandidateRegions []string `yaml:"candidate-regions"`

	// Preferred puts each database's writer in a region: the first rule
	// whose glob pattern (path.Match, "*" stops at "/") matches the
	// database name wins. A candidate elsewhere takes such a lease only
	// while no candidate in the preferred region is up.
	Preferred []lease.RegionRule `yaml:"preferred"`

	// Status is where the local node answers `ferry status` and
	// `ferry handoff`.
	Status StatusConfig `yaml:"status"`

	// Raft configures type raft.
	Raft RaftLeaseConfig `yaml:"raft"`

	// Static configures type static.
	Static StaticLeaseConfig `yaml:"static"`

	// S3 configures type s3.
	S3 S3LeaseConfig `yaml:"s3"`
}

// StatusConfig is lease.status.
type StatusConfig struct {
	// Listen is a loopback host:port for HTTP, or "unix:PATH" for a Unix
	// socket (a relative PATH is under the data directory). Only local
	// clients may ask, since the endpoint can move leases. Default
	// unix:ferry.sock, so that several mounts on one machine never
	// collide.
	Listen string `yaml:"listen"`
}

// RaftLeaseConfig is lease.raft.
type RaftLeaseConfig struct {
	// Bind is the address the Raft port listens on. Default :20202.
	Bind string `yaml:"bind"`
	// Advertise is the address other nodes dial. Default: Bind when it
	// names an IP; on Fly.io use the machine's 6PN address.
	Advertise string `yaml:"advertise"`
	// Dir holds raft.db (raft-boltdb) and snapshots. Default DATA/raft.
	Dir string `yaml:"dir"`
	// Peers lists the Raft addresses of the other nodes. Nodes may list
	// themselves too, so every node can share one list.
	Peers []string `yaml:"peers"`
	// Discovery is a DNS name that resolves to every node, such as
	// "<app>.internal" on Fly.io; each address is dialed on
	// DiscoveryPort (default: the advertised port).
	Discovery     string `yaml:"discovery"`
	DiscoveryPort int    `yaml:"discovery-port"`
	// MaxVoters caps the voting members; further nodes join as
	// non-voters and are promoted when a voter is removed. Default 5.
	MaxVoters int `yaml:"max-voters"`
	// DeadAfter is how long the leader waits for an unreachable member
	// before removing it from the cluster. Default 10m.
	DeadAfter time.Duration `yaml:"dead-after"`
	// HeartbeatTimeout and ElectionTimeout tune Raft. Default 1s each.
	HeartbeatTimeout time.Duration `yaml:"heartbeat-timeout"`
	ElectionTimeout  time.Duration `yaml:"election-timeout"`
}

// StaticLeaseConfig is lease.static.
type StaticLeaseConfig struct {
	// Primary is the node ID that writes every database. Default: this
	// node.
	Primary string `yaml:"primary"`
}

// S3LeaseConfig is lease.s3. Credentials come from the usual AWS
// environment (AWS_ACCESS_KEY_ID and so on).
type S3LeaseConfig struct {
	// Bucket holds the lease objects.
	Bucket string `yaml:"bucket"`
	// Prefix is put before each database name in the object key.
	// Default "leases/".
	Prefix string `yaml:"prefix"`
	// Endpoint is the S3 URL, e.g. https://fly.storage.tigris.dev.
	// Default: AWS.
	Endpoint string `yaml:"endpoint"`
	// Region is the bucket's region. Default "auto".
	Region string `yaml:"region"`
	// ForcePathStyle addresses the bucket in the path, not the host name,
	// as MinIO and versitygw need.
	ForcePathStyle bool `yaml:"force-path-style"`
}

// Defaults for the lease section.
const (
	defaultRaftBind     = ":20202"
	defaultStatusListen = "unix:ferry.sock"
)

// nodeID returns the configured node ID or its default.
func (c LeaseConfig) nodeID() (string, error) {
	if c.Node != "" {
		return c.Node, nil
	}
	if id := os.Getenv("FLY_MACHINE_ID"); id != "" {
		return id, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("lease.node is unset and the hostname is unknown: %v", err)
	}
	return h, nil
}

func (c LeaseConfig) region() string {
	if c.Region != "" {
		return c.Region
	}
	return os.Getenv("FLY_REGION")
}

func (c LeaseConfig) placement() lease.Placement {
	return lease.Placement{Candidates: c.Candidates, CandidateRegions: c.CandidateRegions, Preferred: c.Preferred}
}

// statusListen returns the status endpoint as a network and address.
func (c LeaseConfig) statusListen(dataDir string) (network, addr string, err error) {
	l := c.Status.Listen
	if l == "" {
		l = defaultStatusListen
	}
	if p, ok := strings.CutPrefix(l, "unix:"); ok {
		if p == "" {
			return "", "", errors.New("lease.status.listen: empty unix socket path")
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dataDir, p)
		}
		return "unix", p, nil
	}
	host, _, err := net.SplitHostPort(l)
	if err != nil {
		return "", "", fmt.Errorf("lease.status.listen %q: %w", l, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf("lease.status.listen %q: must be a loopback address or unix:PATH, since it can move leases", l)
	}
	return "tcp", l, nil
}

// validate checks the section without opening anything.
func (c LeaseConfig) validate() error {
	switch c.Type {
	case "", "static", "raft", "s3":
	default:
		return fmt.Errorf("lease.type %q: want static, raft or s3", c.Type)
	}
	if c.TTL < 0 || c.AcquireTimeout < 0 || c.Raft.DeadAfter < 0 {
		return errors.New("lease: durations must not be negative")
	}
	if c.TTL != 0 && c.TTL < 100*time.Millisecond {
		return fmt.Errorf("lease.ttl %s is too short to renew reliably", c.TTL)
	}
	if c.Type == "s3" && c.S3.Bucket == "" {
		return errors.New("lease.s3.bucket is required for lease type s3")
	}
	if _, _, err := c.statusListen(""); err != nil {
		return err
	}
	return c.placement().Validate()
}

// leaseHooks connect the lease manager to the rest of the node. Any
// may be nil, but Raft needs Auth.
type leaseHooks struct {
	// Auth is the cluster's credentials, required of every connection
	// to the Raft port and sent on every connection to a peer's.
	Auth *peerauth.Auth
	// CatchUp runs after this node acquires a lease and before its first
	// write under it (the replicator's bucket catch-up).
	CatchUp lease.CatchUp
	// Drain runs before this node gives up a lease it holds, while the
	// lease is still valid (uploading what the bucket lacks).
	Drain lease.Drain
	// URL is this node's advertised HTTP URL, published with its
	// membership so that readers find the holder's peer stream.
	URL string
}

// open starts the lease manager the section describes. dataDir is the
// config's data directory.
func (c LeaseConfig) open(ctx context.Context, dataDir string, logger *slog.Logger, hooks leaseHooks) (lease.Manager, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	node, err := c.nodeID()
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "", "static":
		dir := ""
		if dataDir != "" {
			dir = filepath.Join(dataDir, "lease")
		}
		return lease.NewStatic(lease.StaticConfig{Node: node, Region: c.region(), Primary: c.Static.Primary, Dir: dir})
	case "raft":
		if hooks.Auth == nil {
			return nil, errors.New("lease type raft needs cluster credentials (cluster.id and the cluster secret)")
		}
		bind := c.Raft.Bind
		if bind == "" {
			bind = defaultRaftBind
		}
		dir := c.Raft.Dir
		if dir == "" {
			if dataDir == "" {
				return nil, errors.New("lease type raft needs a data directory or lease.raft.dir")
			}
			dir = filepath.Join(dataDir, "raft")
		}
		return raftlease.Open(ctx, raftlease.Config{
			Node: node, Region: c.region(), Bind: bind, Advertise: c.Raft.Advertise, Dir: dir, URL: hooks.URL,
			Peers: c.Raft.Peers, Discovery: c.Raft.Discovery, DiscoveryPort: c.Raft.DiscoveryPort,
			MaxVoters: c.Raft.MaxVoters, DeadAfter: c.Raft.DeadAfter,
			TTL: c.TTL, AcquireTimeout: c.AcquireTimeout, Placement: c.placement(), CatchUp: hooks.CatchUp, Drain: hooks.Drain,
			HeartbeatTimeout: c.Raft.HeartbeatTimeout, ElectionTimeout: c.Raft.ElectionTimeout,
			Logger: logger.With("component", "lease"), Auth: hooks.Auth,
		})
	case "s3":
		client, err := c.S3.client(ctx)
		if err != nil {
			return nil, err
		}
		return s3lease.New(s3lease.Config{
			Client: client, Bucket: c.S3.Bucket, Prefix: c.S3.Prefix, Node: node, Region: c.region(), URL: hooks.URL,
			TTL: c.TTL, AcquireTimeout: c.AcquireTimeout, Placement: c.placement(), CatchUp: hooks.CatchUp, Drain: hooks.Drain,
			Logger: logger.With("component", "lease"),
		})
	}
	return nil, fmt.Errorf("lease.type %q: want static, raft or s3", c.Type)
}

func (c S3LeaseConfig) client(ctx context.Context) (*s3.Client, error) {
	region := c.Region
	if region == "" {
		region = "auto"
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("lease.s3: load AWS config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.ForcePathStyle
	}), nil
}
