package status

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
)

// Sources is everything the status endpoint reports on. Any field
// but Lease may be nil; what it would report is then left out.
type Sources struct {
	// Lease is the node's lease manager.
	Lease lease.Manager
	// Databases lists the databases on this node.
	Databases func() []string
	// LocalPos returns a database's local position (ferry.Applier.LocalPos).
	LocalPos func(name string) (ferry.Pos, error)
	// BucketPos returns the position of the newest change set of a
	// database the bucket holds.
	BucketPos func(name string) (ferry.Pos, bool)
	// HolderHead returns the newest position of a database its lease
	// holder has published and when the holder committed it (zero:
	// unknown). It is fed from the bucket's head; a source closer to the
	// holder can replace it without changing how lag is computed.
	HolderHead func(name string) (pos ferry.Pos, commit time.Time, ok bool)
	// CommitTime returns when the transaction at a database's local
	// position was committed by its writer (ferry.Store.CommitTime).
	CommitTime func(name string) (time.Time, bool)
	// SetAside lists the directories holding copies of a database that
	// diverged from the bucket and were set aside (ferry.Store.SetAside).
	SetAside func(name string) ([]string, error)
	// Faults lists the databases that are quarantined or read-only
	// because of an error (ferry.Store.Faults).
	Faults func() []ferry.Fault
}

// Report is the body of GET /v1/status and of `ferry status -json`.
type Report struct {
	Node      string         `json:"node"`
	Region    string         `json:"region,omitempty"`
	Type      string         `json:"type"`
	Leader    string         `json:"leader,omitempty"`
	Term      uint64         `json:"term,omitempty"`
	Members   []lease.Member `json:"members"`
	Databases []Database     `json:"databases"`
}

// Database is one database's line in the report.
type Database struct {
	Name    string     `json:"name"`
	Holder  string     `json:"holder,omitempty"`
	Epoch   uint64     `json:"epoch,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Local   *ferry.Pos `json:"local,omitempty"`
	Bucket  *ferry.Pos `json:"bucket,omitempty"`
	// Lag is how many transactions the bucket trails the local copy by;
	// negative when the local copy trails the bucket.
	Lag *int64 `json:"lag,omitempty"`
	// LagTXIDs is how many transactions this node's copy trails the
	// holder's newest by, and LagSeconds by how much time: the holder's
	// commit time of its newest transaction minus that of the newest one
	// this node has. Both are 0 on the holder and on a node that has
	// everything; either is absent when unknown (see Lag).
	LagTXIDs   *int64   `json:"lagTxids,omitempty"`
	LagSeconds *float64 `json:"lagSeconds,omitempty"`
	Error      string   `json:"error,omitempty"`
	// SetAside is the newest directory holding a copy of the database
	// whose history diverged from the bucket's and was set aside, and
	// SetAsideCount how many such copies there are.
	SetAside      string `json:"setAside,omitempty"`
	SetAsideCount int    `json:"setAsideCount,omitempty"`
	// State is set when the store cannot fully serve the database:
	// "quarantined" (it could not be opened and is left untouched) or
	// "read-only" (a commit could not be captured; repaired in the
	// background). Reason says why.
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// HandoffRequest is the body of POST /v1/handoff.
type HandoffRequest struct {
	Database string `json:"database"`
	Node     string `json:"node"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// Build gathers the report from the sources.
func Build(ctx context.Context, src Sources) (Report, error) {
	st, err := src.Lease.Status(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("lease status: %w", err)
	}
	rep := Report{Node: st.Node, Region: st.Region, Type: st.Type, Leader: st.Leader, Term: st.Term, Members: st.Members}
	leases := make(map[string]lease.Lease, len(st.Leases))
	names := map[string]bool{}
	for _, l := range st.Leases {
		leases[l.Name] = l
		names[l.Name] = true
	}
	if src.Databases != nil {
		for _, n := range src.Databases() {
			names[n] = true
		}
	}
	faults := map[string]ferry.Fault{}
	if src.Faults != nil {
		for _, f := range src.Faults() {
			faults[f.Name] = f
			names[f.Name] = true
		}
	}
	now := time.Now()
	for name := range names {
		d := Database{Name: name}
		if f, ok := faults[name]; ok {
			d.State, d.Reason = f.State, f.Reason
		}
		l, known := leases[name]
		switch {
		case known && l.Held(now):
			d.Holder, d.Epoch = l.Holder, l.Epoch
			exp := l.Expires
			d.Expires = &exp
		case known:
			d.Epoch = l.Epoch // released or expired: the epoch still fences
		default:
			if h, e, ok := src.Lease.Holder(name); ok {
				d.Holder, d.Epoch = h, e // static leases never expire
			}
		}
		if src.LocalPos != nil {
			if p, err := src.LocalPos(name); err != nil {
				d.Error = err.Error()
			} else if !p.IsZero() {
				d.Local = &p
			}
		}
		if src.BucketPos != nil {
			if p, ok := src.BucketPos(name); ok {
				d.Bucket = &p
			}
		}
		if d.Local != nil || d.Bucket != nil {
			var local, bucket int64
			if d.Local != nil {
				local = int64(d.Local.TXID)
			}
			if d.Bucket != nil {
				bucket = int64(d.Bucket.TXID)
			}
			if src.BucketPos != nil {
				lag := local - bucket
				d.Lag = &lag
			}
		}
		if d.Error == "" {
			d.LagTXIDs, d.LagSeconds = Lag(src, name, d.Holder != "" && d.Holder == st.Node, d.Local)
		}
		if src.SetAside != nil {
			if dirs, err := src.SetAside(name); err == nil && len(dirs) > 0 {
				d.SetAside, d.SetAsideCount = dirs[len(dirs)-1], len(dirs)
			}
		}
		rep.Databases = append(rep.Databases, d)
	}
	sort.Slice(rep.Databases, func(i, j int) bool { return rep.Databases[i].Name < rep.Databases[j].Name })
	return rep, nil
}

// Lag returns how far this node's copy of database name, at local
// (nil: none), trails the holder's newest transaction, in transactions
// and in seconds of the holder's commit times. The holder itself lags by
// nothing. Seconds are unknown when the holder's commit time is, or when
// this node has transactions to catch up on but no commit time of its own
// (an empty copy); they are never negative, since clocks differ a little
// between nodes and a restored copy records its restore time.
func Lag(src Sources, name string, holder bool, local *ferry.Pos) (*int64, *float64) {
	zeroTX, zeroSec := int64(0), 0.0
	if holder {
		return &zeroTX, &zeroSec
	}
	if src.HolderHead == nil {
		return nil, nil
	}
	head, commit, ok := src.HolderHead(name)
	if !ok {
		return nil, nil
	}
	var have ferry.Pos
	if local != nil {
		have = *local
	}
	if head.TXID <= have.TXID {
		return &zeroTX, &zeroSec
	}
	behind := int64(head.TXID - have.TXID)
	if commit.IsZero() || src.CommitTime == nil {
		return &behind, nil
	}
	mine, ok := src.CommitTime(name)
	if !ok {
		return &behind, nil
	}
	sec := max(commit.Sub(mine).Seconds(), 0)
	return &behind, &sec
}
