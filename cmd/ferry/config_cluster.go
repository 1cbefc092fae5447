package main

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/ferrydb/ferry/internal/peerauth"
)

// ClusterConfig is the config's cluster section: what makes nodes members
// of one cluster. Every node-to-node request (the Raft port, and the
// status and handoff endpoint) carries the cluster's ID and secret, and
// nodes refuse requests that do not.
//
//	cluster:
//	  id: myapp-prod
//	  secret-env: FERRY_CLUSTER_SECRET
//
// The secret itself is never in the file: it is read from the
// environment variable SecretEnv names (on Fly.io, a secret set with
// `fly secrets set`).
type ClusterConfig struct {
	// ID names the cluster. Two clusters that share a network or a
	// bucket must have different IDs; nodes refuse peers of another ID.
	ID string `yaml:"id"`

	// SecretEnv is the environment variable holding the shared secret, at
	// least 16 bytes. Default FERRY_CLUSTER_SECRET.
	SecretEnv string `yaml:"secret-env"`
}

// defaultSecretEnv is where the secret is read from by default.
const defaultSecretEnv = "FERRY_CLUSTER_SECRET"

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c ClusterConfig) secretEnv() string {
	if c.SecretEnv == "" {
		return defaultSecretEnv
	}
	return c.SecretEnv
}

// validate checks the section's syntax; whether the secret is set is
// checked when the mount starts, since only the mount's environment
// counts.
func (c ClusterConfig) validate() error {
	var errs []error
	if c.ID != "" {
		if err := peerauth.ValidateID(c.ID); err != nil {
			errs = append(errs, fmt.Errorf("cluster.id: %w", err))
		}
	}
	if c.SecretEnv != "" && !envName.MatchString(c.SecretEnv) {
		errs = append(errs, fmt.Errorf("cluster.secret-env %q: want the name of an environment variable", c.SecretEnv))
	}
	return errors.Join(errs...)
}

// auth returns the cluster's credentials, with the secret looked up in
// the environment, or nil when none are configured: no cluster.id, and
// neither the default variable nor a configured secret-env is set.
// Half a configuration is an error rather than no auth, so that a typo
// cannot silently open a node.
func (c ClusterConfig) auth(lookup func(string) (string, bool), logger *slog.Logger) (*peerauth.Auth, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	env := c.secretEnv()
	secret, _ := lookup(env)
	switch {
	case secret == "" && c.ID == "" && c.SecretEnv == "":
		return nil, nil
	case secret == "":
		return nil, fmt.Errorf("cluster: $%s is empty or unset; it must hold the cluster secret (at least %d bytes)", env, peerauth.MinSecretLen)
	case c.ID == "":
		return nil, fmt.Errorf("cluster: $%s holds a cluster secret but cluster.id is not set", env)
	}
	a, err := peerauth.New(c.ID, secret, logger)
	if err != nil {
		return nil, fmt.Errorf("cluster: $%s: %w", env, err)
	}
	return a, nil
}

// requireAuth is auth for a node whose configuration lets other nodes
// talk to it: such a node must not start open to anyone who can reach
// its ports.
func (c ClusterConfig) requireAuth(why string, lookup func(string) (string, bool), logger *slog.Logger) (*peerauth.Auth, error) {
	a, err := c.auth(lookup, logger)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("%s needs cluster credentials: set cluster.id, and the cluster secret (at least %d bytes) in $%s", why, peerauth.MinSecretLen, c.secretEnv())
	}
	return a, nil
}
