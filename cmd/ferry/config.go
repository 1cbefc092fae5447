package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole ferry.yml. Values may refer to environment variables
// as ${VAR}; they are expanded before the file is parsed.
type Config struct {
	// FUSE is the fuse section: where and how the mount appears.
	FUSE FUSEConfig `yaml:"fuse"`

	// Data is the data section: where Ferry keeps databases and their logs.
	Data DataConfig `yaml:"data"`

	// Exec is the application to run once the mount is ready, as in
	// LiteFS: a string is run by /bin/sh -c, a list is the program and its
	// arguments. Ferry passes signals to it, exits with its exit code, and
	// unmounts when it exits. Empty: Ferry runs until it is signalled.
	Exec ExecConfig `yaml:"exec"`

	// Log is the log section.
	Log LogConfig `yaml:"log"`

	// Cluster is the cluster section: the ID and secret nodes present
	// to each other.
	Cluster ClusterConfig `yaml:"cluster"`

	Bucket BucketConfig `yaml:"bucket"`
	Lease  LeaseConfig  `yaml:"lease"`
	Proxy  ProxyConfig  `yaml:"proxy"`
	HTTP   HTTPConfig   `yaml:"http"`

	// Metrics is the metrics section: /metrics and /health.
	Metrics MetricsConfig `yaml:"metrics"`
}

// FUSEConfig is the config's fuse section.
type FUSEConfig struct {
	// Dir is the mount point applications open databases under.
	// Default: /litefs, where LiteFS mounts, so that apps move over unchanged.
	Dir string `yaml:"dir"`

	// AllowOther lets users other than the one running Ferry use the mount
	// (an application running as a non-root user). Non-root mounts also
	// need user_allow_other in /etc/fuse.conf. Default false.
	AllowOther bool `yaml:"allow-other"`

	// Debug logs every FUSE request to stderr. Default false.
	Debug bool `yaml:"debug"`
}

// DataConfig is the config's data section.
type DataConfig struct {
	// Dir holds the files the mount shows (tree/) and each database's
	// position and local LTX log (meta/). Default: /var/lib/ferry.
	Dir string `yaml:"dir"`

	// Retention is how long the local LTX log keeps change sets (the
	// newest always stays, and so does everything not yet in the bucket).
	// Default: 10m.
	Retention time.Duration `yaml:"retention"`
}

// LogConfig is the config's log section.
type LogConfig struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `yaml:"level"`

	// Format is text or json. Default: text.
	Format string `yaml:"format"`
}

// ExecConfig is the command of the exec key: a shell command line, or a
// program and its arguments.
type ExecConfig []string

// UnmarshalYAML accepts a string (run by /bin/sh -c) or a list of strings
// (the program and its arguments).
func (e *ExecConfig) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if strings.TrimSpace(n.Value) == "" {
			*e = nil
			return nil
		}
		*e = ExecConfig{"/bin/sh", "-c", n.Value}
		return nil
	case yaml.SequenceNode:
		var argv []string
		if err := n.Decode(&argv); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		*e = argv
		return nil
	default:
		return fmt.Errorf("line %d: exec must be a string or a list of strings", n.Line)
	}
}

// Defaults for the config.
const (
	DefaultFUSEDir   = "/litefs"
	DefaultDataDir   = "/var/lib/ferry"
	DefaultRetention = 10 * time.Minute
)

// NewConfig returns a config with every default set.
func NewConfig() *Config {
	return &Config{
		FUSE: FUSEConfig{Dir: DefaultFUSEDir},
		Data: DataConfig{Dir: DefaultDataDir, Retention: DefaultRetention},
		Log:  LogConfig{Level: "info", Format: "text"},
	}
}

// envRef matches ${VAR}. A bare $ is left alone, so values such as
// passwords may hold one.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ReadConfig reads the config file at path over the defaults.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data, os.LookupEnv)
}

// parseConfig parses the config read from path over the defaults,
// expanding ${VAR} with lookup. Unknown keys are errors, so that a typo is not silently
// ignored; so is a ${VAR} that is unset in a key with no default. An
// unset ${VAR} in a key with a default leaves it at the default.
func parseConfig(path string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	// An unset variable becomes a marker rather than nothing, so that the
	// key it is in can be found once the text is parsed; a marker is a
	// plain YAML scalar wherever the variable could be.
	expanded := envRef.ReplaceAllStringFunc(string(data), func(m string) string {
		name := m[2 : len(m)-1]
		if v, ok := lookup(name); ok {
			return v
		}
		return unsetMarker(name)
	})
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(expanded), &doc); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	if err := errors.Join(unknownKeys(&doc), unsetVars(&doc)); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg := NewConfig()
	if err := doc.Decode(cfg); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the values of the sections the mount uses.
func (c *Config) Validate() error {
	var errs []error
	if c.FUSE.Dir == "" {
		errs = append(errs, errors.New("fuse.dir must not be empty"))
	}
	if c.Data.Dir == "" {
		errs = append(errs, errors.New("data.dir must not be empty"))
	}
	if c.Data.Retention < 0 {
		errs = append(errs, errors.New("data.retention must not be negative"))
	}
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		errs = append(errs, err)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if err := c.Cluster.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.HTTP.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Proxy.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Metrics.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log.level %q: want debug, info, warn or error", s)
}

// newLogger builds the logger the log section describes.
func (c LogConfig) newLogger(w io.Writer) *slog.Logger {
	level, _ := parseLogLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
