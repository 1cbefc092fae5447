package s3lease

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/s3test"
	"github.com/ferrydb/ferry/lease"
)

const testTTL = time.Second

func TestVersityGW(t *testing.T) {
	runSuite(t, func(t *testing.T) (*s3.Client, string) {
		srv := s3test.Start(t)
		return srv.Client(), srv.Bucket
	})
}

type bucketFunc func(t *testing.T) (*s3.Client, string)

func runSuite(t *testing.T, bucket bucketFunc) {
	t.Run("race", func(t *testing.T) { testRace(t, bucket) })
	t.Run("renew", func(t *testing.T) { testRenew(t, bucket) })
	t.Run("takeover", func(t *testing.T) { testTakeover(t, bucket) })
	t.Run("release-handoff", func(t *testing.T) { testReleaseHandoff(t, bucket) })
	t.Run("corrupt", func(t *testing.T) { testCorrupt(t, bucket) })
	t.Run("peer-url", func(t *testing.T) { testPeerURL(t, bucket) })
}

func newNode(t *testing.T, c *s3.Client, bucket, node string) *Manager {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("FERRY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", node)
	}
	m, err := New(Config{Client: c, Bucket: bucket, Node: node, TTL: testTTL, AcquireTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.abandon() })
	return m
}

// testRace has two nodes contend for the same lease many times at once:
// exactly one wins each round.
func testRace(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		name := "race-" + string(rune('a'+round)) + ".db"
		nodes := []*Manager{newNode(t, c, b, "n1"), newNode(t, c, b, "n2")}
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		epochs := make([]uint64, len(nodes))
		for i, m := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				epochs[i], errs[i] = m.CheckWrite(ctx, name)
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, lease.ErrHeld) && errors.Is(err, ferry.ErrReadOnly):
			default:
				t.Fatalf("node %d: unexpected error %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d winners (%v)", round, won, errs)
		}
		for _, m := range nodes {
			m.abandon()
		}
	}
}

// testRenew checks that renewal keeps the epoch and that an object changed
// behind the holder's back (a 412 on renewal) loses the lease.
func testRenew(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	a := newNode(t, c, b, "a")
	epoch, err := a.CheckWrite(ctx, "r.db")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := a.cached("r.db")
	l, err := a.Renew(ctx, "r.db")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := a.cached("r.db")
	if l.Epoch != epoch || after.etag == before.etag || after.rec.Expires <= before.rec.Expires {
		t.Fatalf("renewal: epoch %d→%d, etag %s→%s", epoch, l.Epoch, before.etag, after.etag)
	}
	// Background renewals keep it alive well past the TTL.
	time.Sleep(2 * testTTL)
	if e, err := a.CheckWrite(ctx, "r.db"); err != nil || e != epoch {
		t.Fatalf("after 2×TTL: epoch %d err %v", e, err)
	}
	// Someone rewrites the object: the next renewal gets 412 and the
	// holder stops writing.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("leases/r.db"),
		Body: bytes.NewReader([]byte(`{"holder":"intruder","epoch":99,"expires":1}`))}); err != nil {
		t.Fatal(err)
	}
	// The background renewal may meet the 412 first and drop the lease,
	// in which case the explicit renewal finds it no longer held.
	if _, err := a.Renew(ctx, "r.db"); !errors.Is(err, lease.ErrLost) && !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("renew after overwrite = %v, want ErrLost or ErrNotHeld", err)
	}
	if _, ok := a.keeper.HeldLease("r.db"); ok {
		t.Fatal("lease still held after 412")
	}
	// The intruder's lease is expired, so the next write takes it over
	// with an epoch above the intruder's.
	if e, err := a.CheckWrite(ctx, "r.db"); err != nil || e != 100 {
		t.Fatalf("retake: epoch %d err %v", e, err)
	}
}

// testTakeover kills a holder; another node takes over after the TTL with
// a higher epoch and no overlap between the two tenures.
func testTakeover(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	a, bn := newNode(t, c, b, "a"), newNode(t, c, b, "b")
	epoch, err := a.CheckWrite(ctx, "t.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bn.CheckWrite(ctx, "t.db"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second node while held: %v", err)
	}
	a.abandon()
	deadline := time.Now().Add(3 * testTTL)
	var epoch2 uint64
	for {
		epoch2, err = bn.CheckWrite(ctx, "t.db")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no takeover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if epoch2 != epoch+1 {
		t.Fatalf("takeover epoch %d, want %d", epoch2, epoch+1)
	}
	ai, bi := a.Intervals("t.db"), bn.Intervals("t.db")
	if len(ai) != 1 || len(bi) != 1 || !ai[0].Until.Before(bi[0].Granted) {
		t.Fatalf("tenures overlap: %+v then %+v", ai, bi)
	}
}

// testReleaseHandoff checks that a release frees the lease at once while
// keeping the epoch, and that a handoff reserves it for its target.
func testReleaseHandoff(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	a, bn, cn := newNode(t, c, b, "a"), newNode(t, c, b, "b"), newNode(t, c, b, "c")
	epoch, err := a.CheckWrite(ctx, "x/h.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := bn.Handoff(ctx, "x/h.db", "c"); !errors.Is(err, lease.ErrNotHeld) {
		t.Fatalf("handoff by non-holder = %v", err)
	}
	if err := a.Handoff(ctx, "x/h.db", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckWrite(ctx, "x/h.db"); !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("old holder after handoff: %v", err)
	}
	if _, err := bn.CheckWrite(ctx, "x/h.db"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("third node during handoff = %v, want ErrHeld", err)
	}
	e, err := cn.CheckWrite(ctx, "x/h.db")
	if err != nil || e != epoch+1 {
		t.Fatalf("handoff target: epoch %d err %v", e, err)
	}
	if err := cn.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err := bn.CheckWrite(ctx, "x/h.db"); err != nil || e != epoch+2 {
		t.Fatalf("after release: epoch %d err %v", e, err)
	}
	st, err := bn.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Leases) != 1 || st.Leases[0].Name != "x/h.db" || st.Leases[0].Holder != "b" {
		t.Fatalf("status leases = %+v", st.Leases)
	}
}

// testCorrupt puts junk where a lease object belongs: acquiring fails
// with a clear error and nothing panics or is overwritten.
func testCorrupt(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	junk := []byte("\x00\xffnot json")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("leases/j.db"), Body: bytes.NewReader(junk)}); err != nil {
		t.Fatal(err)
	}
	a := newNode(t, c, b, "a")
	_, err := a.CheckWrite(ctx, "j.db")
	if err == nil || !errors.Is(err, ferry.ErrReadOnly) {
		t.Fatalf("CheckWrite on junk object = %v", err)
	}
	t.Logf("junk lease object: %v", err)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("leases/j.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(out.Body)
	if !bytes.Equal(buf.Bytes(), junk) {
		t.Fatal("junk lease object was overwritten")
	}
	if _, err := a.CheckWrite(ctx, "../x"); !errors.Is(err, ferry.ErrInvalidName) {
		t.Fatalf("bad name = %v", err)
	}
}

// testPeerURL has a holder publish its URL in its lease object: another
// node that reads the object finds the holder's peer stream there.
func testPeerURL(t *testing.T, bucket bucketFunc) {
	c, b := bucket(t)
	ctx := context.Background()
	a, bn := newNode(t, c, b, "a"), newNode(t, c, b, "b")
	a.cfg.URL = "http://127.0.0.27:27100"
	if _, err := a.CheckWrite(ctx, "u.db"); err != nil {
		t.Fatal(err)
	}
	if _, ok := bn.PeerURL("a"); ok {
		t.Fatal("URL known before any lease object was read")
	}
	if _, err := bn.CheckWrite(ctx, "u.db"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second node while held: %v", err)
	}
	if u, ok := bn.PeerURL("a"); !ok || u != a.cfg.URL {
		t.Fatalf("PeerURL(a) = %q, %v; want %q", u, ok, a.cfg.URL)
	}
}
