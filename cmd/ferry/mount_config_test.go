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
	// LiteFS users expect their databases under /litefs.
	if cfg.FUSE.Dir != "/litefs" || !cfg.FUSE.AllowOther {
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

func TestReadConfigUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"nested typo", "data:\n  dri: /srv/x\n", []string{"line 2: unknown key data.dri (did you mean data.dir?)"}},
		{"top level typo", "fuse:\n  dir: /mnt/x\nlogs:\n  level: debug\n", []string{"line 3: unknown key logs (did you mean log?)"}},
		{"deep typo", "lease:\n  raft:\n    peer: [a:1]\n", []string{"unknown key lease.raft.peer (did you mean lease.raft.peers?)"}},
		{"in a list", "bucket:\n  levels:\n    - {level: 1, intervall: 30s}\n", []string{"unknown key bucket.levels[0].intervall (did you mean bucket.levels[0].interval?)"}},
		{"nothing close", "data:\n  compression: zstd\n", []string{"unknown key data.compression"}},
		{"every one", "fuse:\n  dri: /a\nproxy:\n  adr: :1\n", []string{"fuse.dri (did you mean fuse.dir?)", "proxy.adr (did you mean proxy.addr?)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadConfig(writeConfig(t, tc.body))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want one mentioning %q", err, w)
				}
			}
			if tc.name == "nothing close" && strings.Contains(err.Error(), "did you mean") {
				t.Errorf("err = %v, want no suggestion", err)
			}
		})
	}
}

func TestReadConfigUnsetVariables(t *testing.T) {
	t.Setenv("FERRY_TEST_SET", "/srv/set")
	for _, v := range []string{"FERRY_TEST_NO_MOUNT", "FERRY_TEST_NO_RETENTION", "FERRY_TEST_NO_NODE", "FERRY_TEST_NO_APP", "FERRY_TEST_NO_TARGET", "FERRY_TEST_NO_PEER"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Fatalf("%s is set in the environment", v)
		}
	}

	// Keys with a default keep it when their variable is unset.
	cfg, err := ReadConfig(writeConfig(t, "fuse:\n  dir: \"${FERRY_TEST_NO_MOUNT}\"\ndata:\n  dir: ${FERRY_TEST_SET}/data\n  retention: ${FERRY_TEST_NO_RETENTION}\nlease:\n  node: ${FERRY_TEST_NO_NODE}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FUSE.Dir != DefaultFUSEDir || cfg.Data.Dir != "/srv/set/data" || cfg.Data.Retention != DefaultRetention || cfg.Lease.Node != "" {
		t.Errorf("config = %+v", cfg)
	}

	// Keys without one say which variable is missing.
	for _, tc := range []struct{ body, want string }{
		{"exec: ${FERRY_TEST_NO_APP}\n", "line 1: exec: ${FERRY_TEST_NO_APP} is not set, and exec has no default"},
		{"proxy:\n  addr: :8080\n  target: \"${FERRY_TEST_NO_TARGET}\"\n  db: a.db\n", "line 3: proxy.target: ${FERRY_TEST_NO_TARGET} is not set, and proxy.target has no default"},
		{"lease:\n  raft:\n    peers: [${FERRY_TEST_SET}, ${FERRY_TEST_NO_PEER}]\n", "line 3: lease.raft.peers[1]: ${FERRY_TEST_NO_PEER} is not set"},
	} {
		_, err := ReadConfig(writeConfig(t, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one mentioning %q", tc.body, err, tc.want)
		}
	}
}

func TestReadConfigEmpty(t *testing.T) {
	cfg, err := ReadConfig(writeConfig(t, "# nothing set\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, NewConfig()) {
		t.Errorf("config = %+v, want the defaults", cfg)
	}
}
