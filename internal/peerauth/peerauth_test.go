package peerauth

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testSecret = "0123456789abcdef-secret"

func newTestAuth(t *testing.T, id, secret string, logs io.Writer) *Auth {
	t.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	a, err := New(id, secret, logger)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestNewRejectsBadCredentials(t *testing.T) {
	for _, tc := range []struct{ id, secret, want string }{
		{"", testSecret, "cluster ID is empty"},
		{"a b", testSecret, `cluster ID "a b"`},
		{"prod", "", "at least 16"},
		{"prod", "short", "at least 16"},
		{"prod", strings.Repeat("x", 256), "at most 255"},
	} {
		if _, err := New(tc.id, tc.secret, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %d bytes) = %v, want an error with %q", tc.id, len(tc.secret), err, tc.want)
		}
	}
}

// TestCheckComparesWholeSecret checks that only the exact secret passes:
// not a prefix, not an extension, not one of the same length that differs
// in its first or last byte. The comparison itself is crypto/subtle's on
// SHA-256 digests; BenchmarkCheck shows it costs the same wherever the
// secrets differ.
func TestCheckComparesWholeSecret(t *testing.T) {
	a := newTestAuth(t, "prod", testSecret, nil)
	if err := a.Check("prod", testSecret); err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	last := testSecret[:len(testSecret)-1] + "X"
	first := "X" + testSecret[1:]
	for _, s := range []string{testSecret[:len(testSecret)-1], testSecret + "x", first, last, strings.ToUpper(testSecret)} {
		if err := a.Check("prod", s); !errors.Is(err, ErrWrongSecret) {
			t.Errorf("secret %q: %v, want ErrWrongSecret", s, err)
		}
	}
	if err := a.Check("staging", testSecret); !errors.Is(err, ErrWrongCluster) {
		t.Errorf("other cluster: %v, want ErrWrongCluster", err)
	}
	if err := a.Check("", ""); !errors.Is(err, ErrMissing) {
		t.Errorf("no credentials: %v, want ErrMissing", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	a, err := New("prod", testSecret, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, secret string }{
		{"first-byte-differs", "X" + testSecret[1:]},
		{"last-byte-differs", testSecret[:len(testSecret)-1] + "X"},
		{"equal", testSecret},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				_ = a.Check("prod", bc.secret)
			}
		})
	}
}

func TestHandlerRefusesWithoutCredentials(t *testing.T) {
	var logs bytes.Buffer
	a := newTestAuth(t, "prod", testSecret, &logs)
	served := 0
	srv := httptest.NewServer(a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		_, _ = io.WriteString(w, "the data")
	})))
	defer srv.Close()

	get := func(c *http.Client) (int, string) {
		t.Helper()
		resp, err := c.Get(srv.URL + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	other := newTestAuth(t, "staging", testSecret, nil)
	wrong := newTestAuth(t, "prod", "fedcba9876543210-secret", nil)
	for _, tc := range []struct {
		name   string
		client *http.Client
		reason string
	}{
		{"missing", http.DefaultClient, "no cluster credentials"},
		{"other cluster", &http.Client{Transport: other.Transport(nil)}, "wrong cluster ID"},
		{"wrong secret", &http.Client{Transport: wrong.Transport(nil)}, "wrong cluster secret"},
	} {
		code, body := get(tc.client)
		if code != http.StatusUnauthorized || strings.Contains(body, "the data") || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %q, want 401 with %q and no data", tc.name, code, body, tc.reason)
		}
	}
	if served != 0 {
		t.Fatalf("handler ran %d times for refused requests", served)
	}
	if !strings.Contains(logs.String(), "refused peer") || !strings.Contains(logs.String(), "/v1/status") {
		t.Errorf("no refusal logged: %q", logs.String())
	}

	code, body := get(&http.Client{Transport: a.Transport(nil)})
	if code != http.StatusOK || body != "the data" || served != 1 {
		t.Fatalf("right credentials: %d %q (served %d)", code, body, served)
	}
}

func TestRefusalLogIsRateLimited(t *testing.T) {
	var logs bytes.Buffer
	a := newTestAuth(t, "prod", testSecret, &logs)
	for range 100 {
		_ = a.ReadHello(strings.NewReader("GET / HTTP/1.1\r\n"), "raft", "127.0.0.31:1")
	}
	if n := strings.Count(logs.String(), "refused peer"); n != 1 {
		t.Fatalf("%d log lines for 100 refusals within a second, want 1:\n%s", n, logs.String())
	}
}

func TestHello(t *testing.T) {
	a := newTestAuth(t, "prod", testSecret, nil)
	var buf bytes.Buffer
	if err := a.WriteHello(&buf); err != nil {
		t.Fatal(err)
	}
	hello := buf.Bytes()
	// What follows the hello on the connection is left unread.
	r := io.MultiReader(bytes.NewReader(hello), strings.NewReader("rest"))
	if err := a.ReadHello(r, "raft", "test"); err != nil {
		t.Fatalf("own hello refused: %v", err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("ReadHello consumed past the frame: left %q", rest)
	}

	var wrongBuf, otherBuf bytes.Buffer
	_ = newTestAuth(t, "prod", "fedcba9876543210-secret", nil).WriteHello(&wrongBuf)
	_ = newTestAuth(t, "staging", testSecret, nil).WriteHello(&otherBuf)
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"wrong secret", wrongBuf.Bytes(), ErrWrongSecret},
		{"other cluster", otherBuf.Bytes(), ErrWrongCluster},
		{"no hello", []byte("R\x00\x01garbage"), ErrMissing},
		{"empty", nil, ErrMissing},
		{"truncated", hello[:len(hello)-3], ErrMissing},
		{"length past end", append(append([]byte{}, helloMagic...), 200, 'x'), ErrMissing},
	} {
		if err := a.ReadHello(bytes.NewReader(tc.data), "raft", "test"); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
