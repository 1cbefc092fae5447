package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ferry.yml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadConfigDefaultsAndExpansion(t *testing.T) {
	t.Setenv("FERRY_TEST_DIR", "/srv/data")
	cfg, err := ReadConfig(writeConfig(t, "fuse:\n  allow-other: true\ndata:\n  dir: ${FERRY_TEST_DIR}/x\n  retention: 1h\nexec: \"echo $$HOME\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FUSE.Dir != DefaultFUSEDir || !cfg.FUSE.AllowOther {
		t.Errorf("fuse = %+v", cfg.FUSE)
	}
	if cfg.Data.Dir != "/srv/data/x" || cfg.Data.Retention != time.Hour {
		t.Errorf("data = %+v", cfg.Data)
	}
	if want := (ExecConfig{"/bin/sh", "-c", "echo $$HOME"}); !reflect.DeepEqual(cfg.Exec, want) {
		t.Errorf("exec = %q, want %q", cfg.Exec, want)
	}
}

func TestReadConfigExecList(t *testing.T) {
	cfg, err := ReadConfig(writeConfig(t, "exec: [\"/usr/bin/app\", \"-port\", \"8080\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ExecConfig{"/usr/bin/app", "-port", "8080"}); !reflect.DeepEqual(cfg.Exec, want) {
		t.Errorf("exec = %q, want %q", cfg.Exec, want)
	}
}

func TestReadConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"bad yaml", "fuse: [\n", "parse config"},
		{"bad exec", "exec: {a: b}\n", "exec must be"},
		{"bad level", "log:\n  level: loud\n", "log.level"},
		{"bad format", "log:\n  format: xml\n", "log.format"},
		{"negative retention", "data:\n  retention: -1s\n", "retention"},
		{"empty dir", "fuse:\n  dir: \"\"\n", "fuse.dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadConfig(writeConfig(t, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ReadConfig(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Fatal("missing config file: no error")
	}
}
