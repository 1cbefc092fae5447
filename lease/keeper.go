package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry"
)

// Authority is the place leases are granted: the Raft lease table or the
// lease objects in a bucket. Every call speaks for the local node.
type Authority interface {
	// Grant takes database name's lease for the local node with a new,
	// higher epoch. It returns an error wrapping ErrHeld when another node
	// holds an unexpired lease or a handoff reserved it for another node.
	Grant(ctx context.Context, name string) (Lease, error)
	// Extend renews l, keeping its epoch. It returns an error wrapping
	// ErrLost when l is no longer current.
	Extend(ctx context.Context, l Lease) (Lease, error)
	// Revoke releases l. A non-empty reserveFor leaves the lease reserved
	// for that node for one TTL, which is how a handoff works.
	Revoke(ctx context.Context, l Lease, reserveFor string) error
}

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	// Node is the local node ID.
	Node string
	// TTL is how long a grant or renewal lasts.
	TTL time.Duration
	// Margin is how long before the authority's expiry the local node stops
	// writing, to absorb clock drift between nodes. Default TTL/5.
	Margin time.Duration
	// RenewEvery is the renewal period. Default TTL/4, so a holder gets
	// several attempts before its margin is reached.
	RenewEvery time.Duration
	// AcquireTimeout bounds how long a write waits for the authority when
	// acquiring on demand. Default 5s.
	AcquireTimeout time.Duration
	// CatchUp, if set, runs after each grant and before the first write.
	CatchUp CatchUp
	// Drain, if set, runs before each release while the lease still holds.
	Drain Drain
	// Allowed, if set, applies placement rules before acquiring.
	Allowed func(name string) error
	// Notify, if set, is told of local grants and losses.
	Notify func(Event)
	Logger *slog.Logger
}

// Interval records one tenure of a lease by the local clock: writes were
// allowed from Granted until no later than Until. Tests compare intervals
// recorded by different nodes to prove that tenures never overlap.
type Interval struct {
	Epoch   uint64
	Granted time.Time
	Until   time.Time
	// LastWrite is the last time CheckWrite allowed a write.
	LastWrite time.Time
}

// maxIntervals bounds the tenure history kept per database.
const maxIntervals = 32

// holding is a lease the local node holds.
type holding struct {
	lease      Lease
	validUntil time.Time // local clock; writes stop here
	granted    time.Time
	ready      bool // catch-up finished
	catchUp    *catchUpRun
	lastWrite  atomic.Int64
}

// Keeper holds leases for the local node on top of an Authority: it
// acquires on demand, renews in the background, answers CheckWrite from
// memory and releases on Close. Every manager that grants leases
// remotely builds on it.
type Keeper struct {
	auth Authority
	cfg  KeeperConfig
	log  *slog.Logger

	mu        sync.RWMutex
	held      map[string]*holding
	acquiring map[string]*sync.Mutex
	intervals map[string][]Interval
	closed    bool

	stop chan struct{}
	done chan struct{}
}

// NewKeeper starts a Keeper; Close or Abandon stops it.
func NewKeeper(auth Authority, cfg KeeperConfig) *Keeper {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Margin <= 0 {
		cfg.Margin = cfg.TTL / 5
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = cfg.TTL / 4
	}
	if cfg.AcquireTimeout <= 0 {
		cfg.AcquireTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{
		auth:      auth,
		cfg:       cfg,
		log:       cfg.Logger,
		held:      make(map[string]*holding),
		acquiring: make(map[string]*sync.Mutex),
		intervals: make(map[string][]Interval),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go k.renewLoop()
	return k
}

// TTL returns the lease duration.
func (k *Keeper) TTL() time.Duration { return k.cfg.TTL }

// CheckWrite implements ferry.WriteGuard.
func (k *Keeper) CheckWrite(ctx context.Context, name string) (uint64, error) {
	if epoch, ok := k.valid(name); ok {
		return epoch, nil
	}
	l, err := k.Acquire(ctx, name)
	if err != nil {
		return 0, err
	}
	return l.Epoch, nil
}

// WriteTerm implements ferry.WriteTerm from what the node holds, without
// asking the authority. A lease stops being valid locally a margin before
// the authority's expiry, which leaves the store time to fence writers
// before another node can be granted it.
func (k *Keeper) WriteTerm(name string) (uint64, time.Time, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	h := k.held[name]
	if h == nil {
		return 0, time.Time{}, false
	}
	return h.lease.Epoch, h.validUntil, h.ready && time.Now().Before(h.validUntil)
}

// valid is the write path's fast check: a read lock and a clock read.
func (k *Keeper) valid(name string) (uint64, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	h := k.held[name]
	if h == nil || !h.ready {
		return 0, false
	}
	now := time.Now()
	if !now.Before(h.validUntil) {
		return 0, false
	}
	h.lastWrite.Store(now.UnixNano())
	return h.lease.Epoch, true
}

// HeldLease returns the lease the local node holds on name, if any.
func (k *Keeper) HeldLease(name string) (Lease, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	h := k.held[name]
	if h == nil || !time.Now().Before(h.validUntil) {
		return Lease{}, false
	}
	return h.lease, true
}

// Held returns every lease the local node holds, sorted by name.
func (k *Keeper) Held() []Lease {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]Lease, 0, len(k.held))
	for _, h := range k.held {
		out = append(out, h.lease)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Intervals returns the recorded tenures of name, oldest first.
func (k *Keeper) Intervals(name string) []Interval {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.syncIntervalLocked(name)
	return append([]Interval(nil), k.intervals[name]...)
}

// syncIntervalLocked copies the current holding's state into its interval.
func (k *Keeper) syncIntervalLocked(name string) {
	h := k.held[name]
	iv := k.intervals[name]
	if h == nil || len(iv) == 0 {
		return
	}
	last := &iv[len(iv)-1]
	if last.Epoch != h.lease.Epoch {
		return
	}
	last.Until = h.validUntil
	if n := h.lastWrite.Load(); n != 0 {
		last.LastWrite = time.Unix(0, n)
	}
}

// nameLock serializes acquisitions of one database.
func (k *Keeper) nameLock(name string) *sync.Mutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.acquiring[name]
	if m == nil {
		m = new(sync.Mutex)
		k.acquiring[name] = m
	}
	return m
}

// Acquire takes database name's lease, runs the catch-up hook and returns
// the lease. It waits at most AcquireTimeout for the authority.
func (k *Keeper) Acquire(ctx context.Context, name string) (Lease, error) {
	if err := ferry.ValidateName(name); err != nil {
		return Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	m := k.nameLock(name)
	m.Lock()
	defer m.Unlock()

	k.mu.RLock()
	h, closed := k.held[name], k.closed
	k.mu.RUnlock()
	if closed {
		return Lease{}, fmt.Errorf("acquire lease on %q: %w: %w", name, ferry.ErrReadOnly, ErrClosed)
	}
	if h != nil && time.Now().Before(h.validUntil) && h.ready {
		return h.lease, nil
	}
	if h == nil || !time.Now().Before(h.validUntil) {
		var err error
		if h, err = k.grant(ctx, name); err != nil {
			return Lease{}, err
		}
	}
	if k.cfg.CatchUp != nil {
		if err := k.waitCatchUp(ctx, name, h); err != nil {
			return Lease{}, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held[name] != h || !time.Now().Before(h.validUntil) {
		return Lease{}, fmt.Errorf("lease on %q lapsed during catch-up: %w", name, ErrLost)
	}
	h.ready = true
	return h.lease, nil
}

// grant asks the authority for the lease, retrying transient failures
// until AcquireTimeout.
func (k *Keeper) grant(ctx context.Context, name string) (*holding, error) {
	if k.cfg.Allowed != nil {
		if err := k.cfg.Allowed(name); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.AcquireTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		sent := time.Now()
		l, err := k.auth.Grant(ctx, name)
		if err == nil {
			return k.install(name, l, sent), nil
		}
		if errors.Is(err, ErrHeld) || errors.Is(err, ErrNotCandidate) || errors.Is(err, ferry.ErrInvalidName) {
			return nil, fmt.Errorf("acquire lease on %q: %w", name, err)
		}
		if errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("acquire lease on %q: %w: %w", name, ferry.ErrReadOnly, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("acquire lease on %q: %w: %w", name, ErrUnavailable, err)
		case <-k.stop:
			return nil, fmt.Errorf("acquire lease on %q: %w: %w", name, ferry.ErrReadOnly, ErrClosed)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// install records a fresh grant. Validity is measured from when the
// request was sent, never from when the reply came, so the local node
// stops writing no later than the authority's expiry.
func (k *Keeper) install(name string, l Lease, sent time.Time) *holding {
	now := time.Now()
	h := &holding{lease: l, validUntil: sent.Add(k.cfg.TTL - k.cfg.Margin), granted: now}
	k.mu.Lock()
	k.held[name] = h
	iv := append(k.intervals[name], Interval{Epoch: l.Epoch, Granted: now, Until: h.validUntil})
	if len(iv) > maxIntervals {
		iv = iv[len(iv)-maxIntervals:]
	}
	k.intervals[name] = iv
	k.mu.Unlock()
	k.log.Info("lease acquired", "db", name, "epoch", l.Epoch)
	if k.cfg.Notify != nil {
		k.cfg.Notify(Event{Name: name, Holder: l.Holder, Epoch: l.Epoch})
	}
	return h
}

// Renew renews name's lease now.
func (k *Keeper) Renew(ctx context.Context, name string) (Lease, error) {
	k.mu.RLock()
	h := k.held[name]
	k.mu.RUnlock()
	if h == nil {
		return Lease{}, fmt.Errorf("renew %q: %w", name, ErrNotHeld)
	}
	return k.renew(ctx, name, h)
}

func (k *Keeper) renew(ctx context.Context, name string, h *holding) (Lease, error) {
	k.mu.RLock()
	cur := h.lease
	k.mu.RUnlock()
	sent := time.Now()
	l, err := k.auth.Extend(ctx, cur)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held[name] != h {
		return Lease{}, fmt.Errorf("renew %q: %w", name, ErrNotHeld)
	}
	if err != nil {
		if errors.Is(err, ErrLost) || !time.Now().Before(h.validUntil) {
			k.dropLocked(name, h, time.Now())
			return Lease{}, fmt.Errorf("renew %q: %w", name, err)
		}
		return Lease{}, fmt.Errorf("renew %q: %w", name, err)
	}
	h.lease = l
	if until := sent.Add(k.cfg.TTL - k.cfg.Margin); until.After(h.validUntil) {
		h.validUntil = until
	}
	k.syncIntervalLocked(name)
	return l, nil
}

// dropLocked forgets a holding. until caps the recorded tenure.
func (k *Keeper) dropLocked(name string, h *holding, until time.Time) {
	k.syncIntervalLocked(name)
	if iv := k.intervals[name]; len(iv) > 0 && iv[len(iv)-1].Epoch == h.lease.Epoch && until.Before(iv[len(iv)-1].Until) {
		iv[len(iv)-1].Until = until
	}
	delete(k.held, name)
	k.log.Info("lease given up", "db", name, "epoch", h.lease.Epoch)
	if k.cfg.Notify != nil {
		go k.cfg.Notify(Event{Name: name, Epoch: h.lease.Epoch})
	}
}

// Release gives up name's lease.
func (k *Keeper) Release(ctx context.Context, name string) error {
	return k.release(ctx, name, "")
}

// Handoff releases name's lease reserved for node.
func (k *Keeper) Handoff(ctx context.Context, name, node string) error {
	return k.release(ctx, name, node)
}

func (k *Keeper) release(ctx context.Context, name, reserveFor string) error {
	if _, ok := k.HeldLease(name); ok && k.cfg.Drain != nil {
		if err := k.cfg.Drain(ctx, name); err != nil {
			if reserveFor != "" {
				return fmt.Errorf("hand off %q: drain before release: %w", name, err)
			}
			k.log.Warn("drain before release failed; releasing anyway", "db", name, "err", err)
		}
	}
	k.mu.Lock()
	h := k.held[name]
	if h == nil {
		k.mu.Unlock()
		return fmt.Errorf("release %q: %w", name, ErrNotHeld)
	}
	// Stop writing before telling the authority, so no write can happen
	// after another node could have been granted the lease.
	k.dropLocked(name, h, time.Now())
	k.mu.Unlock()
	if err := k.auth.Revoke(ctx, h.lease, reserveFor); err != nil {
		return fmt.Errorf("release %q: %w", name, err)
	}
	return nil
}

func (k *Keeper) renewLoop() {
	defer close(k.done)
	t := time.NewTicker(k.cfg.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		k.mu.RLock()
		type item struct {
			name string
			h    *holding
		}
		items := make([]item, 0, len(k.held))
		for name, h := range k.held {
			items = append(items, item{name, h})
		}
		k.mu.RUnlock()
		for _, it := range items {
			k.mu.RLock()
			deadline := it.h.validUntil
			k.mu.RUnlock()
			ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(k.cfg.Margin))
			if _, err := k.renew(ctx, it.name, it.h); err != nil {
				k.log.Warn("lease renewal failed", "db", it.name, "err", err)
			}
			cancel()
		}
	}
}

// Close stops renewing and releases every lease, bounded by ctx.
func (k *Keeper) Close(ctx context.Context) error {
	if !k.shutdown() {
		return nil
	}
	var errs []error
	for _, l := range k.Held() {
		if err := k.release(ctx, l.Name, ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Abandon stops renewing and forgets every lease without telling the
// authority, as a crashed node would. Other nodes take over after the TTL.
func (k *Keeper) Abandon() {
	if !k.shutdown() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for name := range k.held {
		k.syncIntervalLocked(name)
		delete(k.held, name)
	}
}

func (k *Keeper) shutdown() bool {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return false
	}
	k.closed = true
	k.mu.Unlock()
	close(k.stop)
	<-k.done
	return true
}
