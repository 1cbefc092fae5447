package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
)

// statusSources is everything the status endpoint reports on. Any field
// but Lease may be nil; what it would report is then left out.
type statusSources struct {
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

// statusReport is the body of GET /v1/status and `ferry status --json`.
type statusReport struct {
	Node      string         `json:"node"`
	Region    string         `json:"region,omitempty"`
	Type      string         `json:"type"`
	Leader    string         `json:"leader,omitempty"`
	Term      uint64         `json:"term,omitempty"`
	Members   []lease.Member `json:"members"`
	Databases []dbStatus     `json:"databases"`
}

// dbStatus is one database's line in the report.
type dbStatus struct {
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
	// everything; either is absent when unknown (see computeLag).
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

// handoffRequest is the body of POST /v1/handoff.
type handoffRequest struct {
	Database string `json:"database"`
	Node     string `json:"node"`
}

// statusError is the body of every error response.
type statusError struct {
	Error string `json:"error"`
}

// maxStatusRequest bounds request bodies; requests are tiny.
const maxStatusRequest = 64 << 10

// newStatusHandler returns the HTTP handler of the local status endpoint:
// GET /v1/status and POST /v1/handoff.
func newStatusHandler(src statusSources) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := buildStatus(r.Context(), src)
		if err != nil {
			writeStatusJSON(w, http.StatusInternalServerError, statusError{err.Error()})
			return
		}
		writeStatusJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/handoff", func(w http.ResponseWriter, r *http.Request) {
		var req handoffRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxStatusRequest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeStatusJSON(w, http.StatusBadRequest, statusError{fmt.Sprintf("bad handoff request: %v", err)})
			return
		}
		if err := ferry.ValidateName(req.Database); err != nil {
			writeStatusJSON(w, http.StatusBadRequest, statusError{err.Error()})
			return
		}
		if req.Node == "" {
			writeStatusJSON(w, http.StatusBadRequest, statusError{"bad handoff request: empty node"})
			return
		}
		if err := src.Lease.Handoff(r.Context(), req.Database, req.Node); err != nil {
			writeStatusJSON(w, handoffStatus(err), statusError{err.Error()})
			return
		}
		writeStatusJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

func handoffStatus(err error) int {
	switch {
	case errors.Is(err, lease.ErrUnknownNode):
		return http.StatusNotFound
	case errors.Is(err, lease.ErrNotHeld), errors.Is(err, lease.ErrNotCandidate), errors.Is(err, lease.ErrLost):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

func writeStatusJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// buildStatus gathers the report from the sources.
func buildStatus(ctx context.Context, src statusSources) (statusReport, error) {
	st, err := src.Lease.Status(ctx)
	if err != nil {
		return statusReport{}, fmt.Errorf("lease status: %w", err)
	}
	rep := statusReport{Node: st.Node, Region: st.Region, Type: st.Type, Leader: st.Leader, Term: st.Term, Members: st.Members}
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
		d := dbStatus{Name: name}
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
			d.LagTXIDs, d.LagSeconds = computeLag(src, name, d.Holder != "" && d.Holder == st.Node, d.Local)
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

// computeLag returns how far this node's copy of database name, at local
// (nil: none), trails the holder's newest transaction, in transactions
// and in seconds of the holder's commit times. The holder itself lags by
// nothing. Seconds are unknown when the holder's commit time is, or when
// this node has transactions to catch up on but no commit time of its own
// (an empty copy); they are never negative, since clocks differ a little
// between nodes and a restored copy records its restore time.
func computeLag(src statusSources, name string, holder bool, local *ferry.Pos) (*int64, *float64) {
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

// serveStatus serves h on the configured status address until ctx ends or
// the returned stop function is called.
func serveStatus(ctx context.Context, cfg LeaseConfig, dataDir string, h http.Handler, logger *slog.Logger) (stop func() error, err error) {
	network, addr, err := cfg.statusListen(dataDir)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		// A socket left by a crashed run would block the listen.
		if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale status socket: %w", err)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("status endpoint: listen on %s: %w", addr, err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("status endpoint: %w", err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Error("status endpoint stopped", "err", err)
		}
	}()
	stopCtx := context.AfterFunc(ctx, func() { srv.Close() })
	return func() error {
		stopCtx()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}, nil
}
