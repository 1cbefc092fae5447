package flyproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// instances starts a "busy" instance that asks for every request to be
// replayed on "holder", and the holder, which echoes the body length and
// the replay source.
func instances(t *testing.T) *Proxy {
	t.Helper()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("fly-replay", "instance=holder")
		w.WriteHeader(http.StatusConflict)
	}))
	t.Cleanup(busy.Close)
	holder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Src", r.Header.Get("Fly-Replay-Src"))
		_, _ = io.WriteString(w, strings.Repeat("x", int(n)%10))
	}))
	t.Cleanup(holder.Close)
	p, err := New(map[string]string{"busy": busy.URL, "holder": holder.URL})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReplayToInstance(t *testing.T) {
	p := instances(t)
	r := httptest.NewRequest("POST", "/", strings.NewReader("abc"))
	r.Header.Set(ForceInstanceHeader, "busy")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "xxx" || !strings.HasPrefix(w.Header().Get("X-Src"), "instance=") || p.Replays.Load() != 1 {
		t.Fatalf("code %d body %q src %q replays %d", w.Code, w.Body.String(), w.Header().Get("X-Src"), p.Replays.Load())
	}
}

func TestReplayRefusesBodyOverLimit(t *testing.T) {
	p := instances(t)
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("y", MaxReplayBody+1)))
	r.Header.Set(ForceInstanceHeader, "busy")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || p.Replays.Load() != 0 {
		t.Fatalf("code %d replays %d", w.Code, p.Replays.Load())
	}
}

func TestNewRefusesBadInstances(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("no instances accepted")
	}
	if _, err := New(map[string]string{"a": "::"}); err == nil {
		t.Fatal("bad URL accepted")
	}
}
