package main

import (
	"strings"
	"testing"
)

func TestHTTPConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  HTTPConfig
		want string // "" for valid
	}{
		{HTTPConfig{}, ""},
		{HTTPConfig{Addr: ":20203"}, ""},
		{HTTPConfig{Addr: "127.0.0.21:27100", AdvertiseURL: "http://node1.internal:27100"}, ""},
		{HTTPConfig{AdvertiseURL: "http://x:1"}, "http.advertise-url needs http.addr"},
		{HTTPConfig{Addr: "20203"}, "http.addr"},
		{HTTPConfig{Addr: ":1", AdvertiseURL: "node1:1"}, "want http://host:port"},
		{HTTPConfig{Addr: ":1", AdvertiseURL: "ftp://node1:1"}, "want http://host:port"},
	} {
		err := tc.cfg.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if got := (HTTPConfig{Addr: "127.0.0.21:27100"}).advertiseURL(); got != "http://127.0.0.21:27100" {
		t.Errorf("default advertised URL %q", got)
	}
	cfg, err := parseConfig("ferry.yml", []byte("http:\n  addr: \":20203\"\n  advertise-url: \"http://n1:20203\"\n"), func(string) (string, bool) { return "", false })
	if err != nil || cfg.HTTP.AdvertiseURL != "http://n1:20203" {
		t.Fatalf("parse http section: %+v %v", cfg.HTTP, err)
	}
	if _, err := parseConfig("ferry.yml", []byte("http:\n  adr: \":1\"\n"), func(string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Fatalf("typo in the http section: %v", err)
	}
}
