// Package peerauth keeps node-to-node traffic within one cluster. Every
// request between nodes carries the cluster's ID and its shared secret;
// the receiving node checks both before it reads anything else, compares
// the secret in constant time, and refuses and logs whatever does not
// match.
//
// HTTP endpoints wrap their handler with Auth.Handler and their clients'
// transport with Auth.Transport. Raw TCP connections (the Raft port) open
// with a hello frame: WriteHello on the dialing side, ReadHello on the
// accepting side.
//
// The secret proves membership; it does not encrypt. Nodes are expected
// to talk over a private network (a WireGuard mesh such as Fly.io's 6PN).
package peerauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// MinSecretLen is the shortest secret accepted: a short one could be
// guessed by anyone who can reach a node's port.
const MinSecretLen = 16

// maxFieldLen bounds the cluster ID and the secret, so a hello frame is
// small and bounded.
const maxFieldLen = 255

// idPattern is what a cluster ID may look like: it travels in an HTTP
// header and in log lines.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Reasons a peer is refused. Match them with errors.Is.
var (
	// ErrMissing means the request carried no cluster credentials.
	ErrMissing = errors.New("no cluster credentials")
	// ErrWrongCluster means the request came from another cluster ID.
	ErrWrongCluster = errors.New("wrong cluster ID")
	// ErrWrongSecret means the cluster ID matched but the secret did not.
	ErrWrongSecret = errors.New("wrong cluster secret")
)

// Auth checks and supplies one cluster's credentials. It is safe for
// concurrent use.
type Auth struct {
	id     string
	secret string
	digest [sha256.Size]byte
	log    *slog.Logger

	// Refusals are logged at most once per logEvery; the lines left out
	// are counted in the next one, so a flood of bad requests cannot fill
	// the disk but none goes unnoticed.
	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

// logEvery is the least time between two refusal log lines.
const logEvery = time.Second

// New returns the Auth of the cluster with ID id and secret secret.
// Refusals are logged to logger (nil: not logged).
func New(id, secret string, logger *slog.Logger) (*Auth, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cluster secret is %d bytes; it must be at least %d", len(secret), MinSecretLen)
	}
	if len(secret) > maxFieldLen {
		return nil, fmt.Errorf("cluster secret is %d bytes; it must be at most %d", len(secret), maxFieldLen)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Auth{id: id, secret: secret, digest: sha256.Sum256([]byte(secret)), log: logger}, nil
}

// ValidateID reports whether id can name a cluster.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("cluster ID is empty")
	}
	if len(id) > maxFieldLen || !idPattern.MatchString(id) {
		return fmt.Errorf("cluster ID %q: want letters, digits, '.', '_' or '-', at most %d", id, maxFieldLen)
	}
	return nil
}

// ClusterID returns the cluster's ID.
func (a *Auth) ClusterID() string { return a.id }

// Check compares credentials a peer presented with the cluster's. The
// secrets are compared as SHA-256 digests in constant time, so neither
// their content nor their length shows in how long the check takes.
func (a *Auth) Check(id, secret string) error {
	if id == "" && secret == "" {
		return ErrMissing
	}
	// The ID is no secret; comparing it first gives a clearer refusal
	// when two clusters share a network.
	if id != a.id {
		return fmt.Errorf("%w %q", ErrWrongCluster, id)
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], a.digest[:]) != 1 {
		return ErrWrongSecret
	}
	return nil
}

// refused logs that a peer was turned away, rate-limited.
func (a *Auth) refused(via, remote string, err error) {
	a.mu.Lock()
	now := time.Now()
	if now.Sub(a.lastLog) < logEvery {
		a.suppressed++
		a.mu.Unlock()
		return
	}
	suppressed := a.suppressed
	a.lastLog, a.suppressed = now, 0
	a.mu.Unlock()
	a.log.Warn("refused peer: "+err.Error(), "via", via, "remote", remote, "cluster", a.id, "refusedSinceLastLine", suppressed)
}
