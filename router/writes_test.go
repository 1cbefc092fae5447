package router

import (
	"net/http/httptest"
	"testing"
)

func TestWritePolicy(t *testing.T) {
	isWrite, err := WritePolicy{
		Reads:  []string{"POST /search"},
		Writes: []string{"GET /track/"},
	}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/items", true},
		{"POST", "/search", false},
		{"POST", "/search/more", true},
		{"GET", "/items", false},
		{"GET", "/track/pixel.gif", true},
		{"HEAD", "/track/pixel.gif", false},
		{"DELETE", "/x", true},
	} {
		if got := isWrite(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("%s %s: write=%v, want %v", tc.method, tc.path, got, tc.want)
		}
	}

	only, err := WritePolicy{Methods: []string{"POST"}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if only(httptest.NewRequest("PUT", "/", nil)) || !only(httptest.NewRequest("POST", "/", nil)) {
		t.Fatal("methods list not honoured")
	}
}

func TestWritePolicyRefusesBadPatterns(t *testing.T) {
	for _, p := range []WritePolicy{
		{Reads: []string{"POST"}},
		{Reads: []string{"post /x"}},
		{Writes: []string{"GET x"}},
		{Methods: []string{"get"}},
		{Methods: []string{""}},
	} {
		if _, err := p.Compile(); err == nil {
			t.Errorf("%+v compiled", p)
		}
	}
}
