package lease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydb/ferry"
)

// Static is a Manager with a fixed primary: the primary holds every lease
// forever and every other node is read-only. It is the single-node default.
type Static struct {
	Watchers
	node, region, primary string
	epoch                 uint64
}

// StaticConfig configures a Static manager.
type StaticConfig struct {
	// Node is the local node ID.
	Node string
	// Region is the local region, for status output.
	Region string
	// Primary is the node ID that writes; empty means the local node.
	Primary string
	// Dir, if set, keeps a counter that raises the epoch each time the
	// primary starts, so uploads from a previous run are fenced off.
	Dir string
}

// staticEpochFile holds the primary's last epoch under StaticConfig.Dir.
const staticEpochFile = "static-epoch"

// NewStatic returns a Static manager.
func NewStatic(cfg StaticConfig) (*Static, error) {
	if cfg.Node == "" {
		return nil, errors.New("static lease: empty node ID")
	}
	s := &Static{node: cfg.Node, region: cfg.Region, primary: cfg.Primary, epoch: 1}
	if s.primary == "" {
		s.primary = cfg.Node
	}
	if cfg.Dir != "" && s.primary == s.node {
		epoch, err := bumpEpoch(filepath.Join(cfg.Dir, staticEpochFile))
		if err != nil {
			return nil, fmt.Errorf("static lease: %w", err)
		}
		s.epoch = epoch
	}
	return s, nil
}

// bumpEpoch reads, increments and durably rewrites the counter at path.
func bumpEpoch(path string) (uint64, error) {
	var epoch uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		epoch, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse epoch file %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("read epoch file: %w", err)
	}
	epoch++
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, fmt.Errorf("create epoch dir: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("write epoch file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", epoch)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return 0, fmt.Errorf("write epoch file: %w", err)
	}
	return epoch, nil
}

// CheckWrite implements ferry.WriteGuard.
func (s *Static) CheckWrite(ctx context.Context, name string) (uint64, error) {
	if s.primary != s.node {
		return 0, fmt.Errorf("%q is written by static primary %q: %w", name, s.primary, ErrHeld)
	}
	return s.epoch, nil
}

// WriteTerm implements ferry.WriteTerm: the static primary's term never
// ends while it runs.
func (s *Static) WriteTerm(name string) (uint64, time.Time, bool) {
	if s.primary != s.node {
		return 0, time.Time{}, false
	}
	return s.epoch, time.Now().Add(time.Hour), true
}

// ProbeLease implements ferry.LeaseProbe: the primary holds every lease
// and no other node may ever hold one.
func (s *Static) ProbeLease(name string) ferry.LeaseState {
	if s.primary != s.node {
		return ferry.LeaseBarred
	}
	return ferry.LeaseMine
}

// Holder implements ferry.LeaseView.
func (s *Static) Holder(name string) (string, uint64, bool) {
	if s.primary == s.node {
		return s.primary, s.epoch, true
	}
	// A replica does not know the primary's epoch.
	return s.primary, 0, true
}

// Acquire returns the lease on the primary and ErrHeld elsewhere.
func (s *Static) Acquire(ctx context.Context, name string) (Lease, error) {
	if err := ferry.ValidateName(name); err != nil {
		return Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	if _, err := s.CheckWrite(ctx, name); err != nil {
		return Lease{}, err
	}
	return Lease{Name: name, Holder: s.node, Epoch: s.epoch}, nil
}

// Renew is Acquire: a static lease never expires.
func (s *Static) Renew(ctx context.Context, name string) (Lease, error) {
	return s.Acquire(ctx, name)
}

// Release does nothing: the primary never gives up its leases.
func (s *Static) Release(ctx context.Context, name string) error { return nil }

// Handoff always fails: the primary is fixed by config.
func (s *Static) Handoff(ctx context.Context, name, node string) error {
	if node != s.primary && node != s.node {
		return fmt.Errorf("handoff %q to %q: %w (static lease knows only %q)", name, node, ErrUnknownNode, s.primary)
	}
	return fmt.Errorf("handoff %q: the static lease's primary is fixed by config (lease.static.primary)", name)
}

// Status returns the primary and, if different, the local node.
func (s *Static) Status(ctx context.Context) (Status, error) {
	st := Status{Type: "static", Node: s.node, Region: s.region}
	st.Members = append(st.Members, Member{ID: s.primary, Role: "primary", Voter: true})
	if s.node != s.primary {
		st.Members = append(st.Members, Member{ID: s.node, Region: s.region, Role: "replica"})
	} else {
		st.Members[0].Region = s.region
	}
	return st, nil
}

// Close does nothing.
func (s *Static) Close() error { return nil }

var _ Manager = (*Static)(nil)
