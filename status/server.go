// Package status serves a node's status endpoint: GET /v1/status reports
// the lease table as this node sees it and each database's positions, lag
// and faults; POST /v1/handoff moves a database's lease to another node.
// `ferry status` and `ferry handoff` are its clients.
package status

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
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/lease"
)

// maxRequest bounds request bodies; requests are tiny.
const maxRequest = 64 << 10

// NewHandler returns the HTTP handler of the local status endpoint:
// GET /v1/status and POST /v1/handoff.
func NewHandler(src Sources) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		rep, err := Build(r.Context(), src)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, ErrorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/handoff", func(w http.ResponseWriter, r *http.Request) {
		var req HandoffRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorBody{fmt.Sprintf("bad handoff request: %v", err)})
			return
		}
		if err := ferry.ValidateName(req.Database); err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorBody{err.Error()})
			return
		}
		if req.Node == "" {
			writeJSON(w, http.StatusBadRequest, ErrorBody{"bad handoff request: empty node"})
			return
		}
		if err := src.Lease.Handoff(r.Context(), req.Database, req.Node); err != nil {
			writeJSON(w, handoffCode(err), ErrorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

func handoffCode(err error) int {
	switch {
	case errors.Is(err, lease.ErrUnknownNode):
		return http.StatusNotFound
	case errors.Is(err, lease.ErrNotHeld), errors.Is(err, lease.ErrNotCandidate), errors.Is(err, lease.ErrLost):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Serve serves h on addr ("unix" or "tcp" network) until ctx ends or the
// returned stop function is called. A Unix socket is made readable and
// writable by its owner alone.
func Serve(ctx context.Context, network, addr string, h http.Handler, logger *slog.Logger) (stop func() error, err error) {
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
