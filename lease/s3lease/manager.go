// Package s3lease keeps each database's write lease as an object in an
// S3-compatible bucket, taken and renewed with conditional writes. It needs
// no quorum of running machines, so it suits deployments that scale to
// zero.
//
// The lease object of database NAME is PREFIX/NAME, a small JSON document
// (holder, epoch, expiry). A node creates it with If-None-Match: * and
// takes it over or renews it with If-Match: <etag>; a 412 (or 409, which S3
// returns for a concurrent conditional write) means another node got there
// first. Release rewrites the object without a holder, again with
// If-Match, instead of deleting it: a deleted object would forget the
// epoch, and the next holder's fencing token must be higher than every
// token issued before.
package s3lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
)

// Config configures an S3 lease manager.
type Config struct {
	// Client talks to the bucket.
	Client *s3.Client
	Bucket string
	// Prefix is prepended to database names to form object keys.
	// Default "leases/".
	Prefix string
	// Node and Region identify the local node.
	Node   string
	Region string
	// URL is this node's advertised HTTP URL (http.advertise-url),
	// written into every lease object it holds so that readers find its
	// peer stream. Empty: none.
	URL string
	// TTL is the lease duration. Default 10s. Renewal runs every TTL/4.
	TTL time.Duration
	// AcquireTimeout bounds an on-demand acquire. Default 5s.
	AcquireTimeout time.Duration
	Placement      lease.Placement
	CatchUp        lease.CatchUp
	// Drain runs before each release or handoff of a held lease.
	Drain  lease.Drain
	Logger *slog.Logger
}

// maxLeaseObject bounds how much of a lease object is read.
const maxLeaseObject = 64 << 10

// maxStatusObjects bounds the lease objects Status lists.
const maxStatusObjects = 1000

// record is the lease object's content.
type record struct {
	Holder string `json:"holder,omitempty"`
	Region string `json:"region,omitempty"`
	// URL is the holder's advertised HTTP URL, where it streams the
	// database to readers.
	URL           string `json:"url,omitempty"`
	Epoch         uint64 `json:"epoch"`
	Expires       int64  `json:"expires,omitempty"` // unix ns, holder's clock
	ReservedFor   string `json:"reservedFor,omitempty"`
	ReservedUntil int64  `json:"reservedUntil,omitempty"`
}

func (r record) lease(name string) lease.Lease {
	l := lease.Lease{Name: name, Holder: r.Holder, Epoch: r.Epoch, ReservedFor: r.ReservedFor}
	if r.Expires != 0 {
		l.Expires = time.Unix(0, r.Expires)
	}
	if r.ReservedUntil != 0 {
		l.ReservedUntil = time.Unix(0, r.ReservedUntil)
	}
	return l
}

// known is the last version of a lease object this node saw.
type known struct {
	rec  record
	etag string
}

// Manager is a lease.Manager over S3 conditional writes.
type Manager struct {
	lease.Watchers
	cfg    Config
	log    *slog.Logger
	keeper *lease.Keeper

	mu    sync.Mutex
	cache map[string]known
	urls  map[string]string // node -> advertised URL, from lease objects read
}

var _ lease.Manager = (*Manager)(nil)

// New returns a manager; it makes no request until the first acquire.
func New(cfg Config) (*Manager, error) {
	if cfg.Client == nil || cfg.Bucket == "" {
		return nil, errors.New("s3 lease: client and bucket are required")
	}
	if cfg.Node == "" {
		return nil, errors.New("s3 lease: empty node ID")
	}
	if err := cfg.Placement.Validate(); err != nil {
		return nil, fmt.Errorf("s3 lease: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "leases/"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, cache: make(map[string]known), urls: make(map[string]string)}
	m.keeper = lease.NewKeeper(authority{m}, lease.KeeperConfig{
		Node: cfg.Node, TTL: cfg.TTL, AcquireTimeout: cfg.AcquireTimeout, CatchUp: cfg.CatchUp, Drain: cfg.Drain,
		Allowed: func(name string) error {
			// Without a membership view, any candidate may take any lease.
			return cfg.Placement.Allowed(name, cfg.Node, cfg.Region, nil)
		},
		Notify: m.Emit, Logger: cfg.Logger,
	})
	return m, nil
}

func (m *Manager) key(name string) string { return m.cfg.Prefix + name }

// errConflict reports whether err is S3's answer to a failed condition.
func errConflict(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		s := re.HTTPStatusCode()
		return s == http.StatusPreconditionFailed || s == http.StatusConflict
	}
	return false
}

func errNotFound(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// read fetches database name's lease object; ok is false if it is absent.
func (m *Manager) read(ctx context.Context, name string) (k known, ok bool, err error) {
	out, err := m.cfg.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &m.cfg.Bucket, Key: aws.String(m.key(name))})
	if err != nil {
		if errNotFound(err) {
			return known{}, false, nil
		}
		return known{}, false, fmt.Errorf("read lease object %s: %w", m.key(name), err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxLeaseObject))
	if err != nil {
		return known{}, false, fmt.Errorf("read lease object %s: %w", m.key(name), err)
	}
	if err := json.Unmarshal(b, &k.rec); err != nil {
		return known{}, false, fmt.Errorf("lease object %s is not a Ferry lease (remove it to reset the lease): %w: %w", m.key(name), lease.ErrCorrupt, err)
	}
	k.etag = aws.ToString(out.ETag)
	m.remember(name, k)
	return k, true, nil
}

// write stores rec under a condition: ifMatch is an ETag, or "" to create.
func (m *Manager) write(ctx context.Context, name string, rec record, ifMatch string) (known, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return known{}, fmt.Errorf("encode lease object: %w", err)
	}
	in := &s3.PutObjectInput{
		Bucket: &m.cfg.Bucket, Key: aws.String(m.key(name)), Body: bytes.NewReader(b),
		ContentType: aws.String("application/json"),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := m.cfg.Client.PutObject(ctx, in)
	if err != nil {
		return known{}, err
	}
	k := known{rec: rec, etag: aws.ToString(out.ETag)}
	m.remember(name, k)
	return k, nil
}

func (m *Manager) remember(name string, k known) {
	m.mu.Lock()
	m.cache[name] = k
	if k.rec.Holder != "" && k.rec.URL != "" {
		m.urls[k.rec.Holder] = k.rec.URL
	}
	m.mu.Unlock()
}

// PeerURL implements lease.PeerLocator: the URL node wrote into the last
// lease object of its that this node read.
func (m *Manager) PeerURL(node string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.urls[node]
	return u, ok
}

func (m *Manager) cached(name string) (known, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.cache[name]
	return k, ok
}

// authority adapts the manager to lease.Authority.
type authority struct{ m *Manager }

func (a authority) Grant(ctx context.Context, name string) (lease.Lease, error) {
	m := a.m
	cur, ok, err := m.read(ctx, name)
	if err != nil {
		return lease.Lease{}, err
	}
	now := time.Now()
	rec := record{Holder: m.cfg.Node, Region: m.cfg.Region, URL: m.cfg.URL, Epoch: 1, Expires: now.Add(m.cfg.TTL).UnixNano()}
	etag := ""
	if ok {
		r := cur.rec
		if r.Holder != "" && r.Holder != m.cfg.Node && now.UnixNano() < r.Expires {
			return lease.Lease{}, fmt.Errorf("%q holds %q until %s: %w", r.Holder, name, time.Unix(0, r.Expires).UTC().Format(time.RFC3339Nano), lease.ErrHeld)
		}
		if r.ReservedFor != "" && r.ReservedFor != m.cfg.Node && now.UnixNano() < r.ReservedUntil {
			return lease.Lease{}, fmt.Errorf("%q is being handed off to %q: %w", name, r.ReservedFor, lease.ErrHeld)
		}
		rec.Epoch = r.Epoch + 1
		etag = cur.etag
	}
	k, err := m.write(ctx, name, rec, etag)
	if err != nil {
		if errConflict(err) {
			return lease.Lease{}, fmt.Errorf("another node took %q first: %w", name, lease.ErrHeld)
		}
		return lease.Lease{}, fmt.Errorf("write lease object %s: %w", m.key(name), err)
	}
	return k.rec.lease(name), nil
}

func (a authority) Extend(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	m := a.m
	cur, ok := m.cached(l.Name)
	if !ok || cur.rec.Epoch != l.Epoch || cur.rec.Holder != m.cfg.Node {
		return lease.Lease{}, fmt.Errorf("renew %q: no current lease object: %w", l.Name, lease.ErrLost)
	}
	rec := cur.rec
	rec.Expires = time.Now().Add(m.cfg.TTL).UnixNano()
	k, err := m.write(ctx, l.Name, rec, cur.etag)
	if err != nil {
		if errConflict(err) {
			return lease.Lease{}, fmt.Errorf("renew %q: lease object changed: %w", l.Name, lease.ErrLost)
		}
		return lease.Lease{}, fmt.Errorf("renew %q: %w", l.Name, err)
	}
	return k.rec.lease(l.Name), nil
}

func (a authority) Revoke(ctx context.Context, l lease.Lease, reserveFor string) error {
	m := a.m
	cur, ok := m.cached(l.Name)
	if !ok || cur.rec.Epoch != l.Epoch || cur.rec.Holder != m.cfg.Node {
		return fmt.Errorf("release %q: %w", l.Name, lease.ErrLost)
	}
	rec := record{Epoch: cur.rec.Epoch}
	if reserveFor != "" {
		rec.ReservedFor = reserveFor
		rec.ReservedUntil = time.Now().Add(m.cfg.TTL).UnixNano()
	}
	if _, err := m.write(ctx, l.Name, rec, cur.etag); err != nil {
		if errConflict(err) {
			return fmt.Errorf("release %q: lease object changed: %w", l.Name, lease.ErrLost)
		}
		return fmt.Errorf("release %q: %w", l.Name, err)
	}
	return nil
}

// WriteTerm implements ferry.WriteTerm.
func (m *Manager) WriteTerm(name string) (uint64, time.Time, bool) { return m.keeper.WriteTerm(name) }

// ProbeLease implements ferry.LeaseProbe from the last lease object seen.
func (m *Manager) ProbeLease(name string) ferry.LeaseState {
	k, ok := m.cached(name)
	return m.keeper.Probe(name, k.rec.lease(name), ok)
}

// CheckWrite implements ferry.WriteGuard.
func (m *Manager) CheckWrite(ctx context.Context, name string) (uint64, error) {
	return m.keeper.CheckWrite(ctx, name)
}

// Holder implements ferry.LeaseView from the last lease object seen.
func (m *Manager) Holder(name string) (string, uint64, bool) {
	if l, ok := m.keeper.HeldLease(name); ok {
		return l.Holder, l.Epoch, true
	}
	k, ok := m.cached(name)
	if !ok || k.rec.Holder == "" || time.Now().UnixNano() >= k.rec.Expires {
		return "", 0, false
	}
	return k.rec.Holder, k.rec.Epoch, true
}

// Acquire implements lease.Manager.
func (m *Manager) Acquire(ctx context.Context, name string) (lease.Lease, error) {
	return m.keeper.Acquire(ctx, name)
}

// Renew implements lease.Manager.
func (m *Manager) Renew(ctx context.Context, name string) (lease.Lease, error) {
	return m.keeper.Renew(ctx, name)
}

// Release implements lease.Manager.
func (m *Manager) Release(ctx context.Context, name string) error {
	return m.keeper.Release(ctx, name)
}

// Handoff implements lease.Manager. Only the holder can hand a lease off:
// nodes sharing a bucket do not know each other's addresses.
func (m *Manager) Handoff(ctx context.Context, name, node string) error {
	if err := ferry.ValidateName(name); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if node == "" {
		return fmt.Errorf("handoff %q: empty node ID: %w", name, lease.ErrUnknownNode)
	}
	if _, ok := m.keeper.HeldLease(name); !ok {
		holder, _, _ := m.Holder(name)
		return fmt.Errorf("handoff %q: run it on the holder (%q): %w", name, holder, lease.ErrNotHeld)
	}
	return m.keeper.Handoff(ctx, name, node)
}

// Status lists the lease objects in the bucket.
func (m *Manager) Status(ctx context.Context) (lease.Status, error) {
	st := lease.Status{Type: "s3", Node: m.cfg.Node, Region: m.cfg.Region,
		Members: []lease.Member{{ID: m.cfg.Node, Region: m.cfg.Region, Role: "self"}}}
	p := s3.NewListObjectsV2Paginator(m.cfg.Client, &s3.ListObjectsV2Input{Bucket: &m.cfg.Bucket, Prefix: &m.cfg.Prefix})
	var names []string
	for p.HasMorePages() && len(names) < maxStatusObjects {
		page, err := p.NextPage(ctx)
		if err != nil {
			return st, fmt.Errorf("list lease objects: %w", err)
		}
		for _, o := range page.Contents {
			names = append(names, strings.TrimPrefix(aws.ToString(o.Key), m.cfg.Prefix))
		}
	}
	seen := map[string]bool{m.cfg.Node: true}
	for _, name := range names {
		k, ok, err := m.read(ctx, name)
		if err != nil || !ok {
			continue // a corrupt or vanished object does not stop the report
		}
		st.Leases = append(st.Leases, k.rec.lease(name))
		if h := k.rec.Holder; h != "" && !seen[h] {
			seen[h] = true
			st.Members = append(st.Members, lease.Member{ID: h, Region: k.rec.Region, Role: "holder"})
		}
	}
	sort.Slice(st.Leases, func(i, j int) bool { return st.Leases[i].Name < st.Leases[j].Name })
	return st, nil
}

// Intervals returns this node's recorded tenures of name.
func (m *Manager) Intervals(name string) []lease.Interval { return m.keeper.Intervals(name) }

// Close releases every lease this node holds.
func (m *Manager) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.keeper.Close(ctx)
}

// abandon stops renewing without releasing, as a crash would.
func (m *Manager) abandon() { m.keeper.Abandon() }
