package replicate

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// racingBackend shows a reader the bucket the way a writer's upload in
// progress can: objects the head announces but that are not stored yet,
// and listings taken before the newest upload.
type racingBackend struct {
	Backend
	mu sync.Mutex
	// unwritten holds keys that are neither listed nor readable, as an L0
	// object whose head is written but whose own PUT is still in flight.
	unwritten map[string]bool
	// staleLists is how many of the next listings leave out the keys in
	// unlisted, as a listing served from an older view of the bucket.
	staleLists int
	unlisted   map[string]bool
	// afterList, if set, runs once after the next listing is taken and
	// before it is returned: a writer's upload lands in between.
	afterList func()
}

func newRacingBackend(b Backend) *racingBackend {
	return &racingBackend{Backend: b, unwritten: map[string]bool{}, unlisted: map[string]bool{}}
}

func (b *racingBackend) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	b.mu.Lock()
	hidden := b.unwritten[key]
	b.mu.Unlock()
	if hidden {
		return nil, ObjectInfo{}, ErrObjectNotFound
	}
	return b.Backend.Get(ctx, key)
}

func (b *racingBackend) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	objs, err := b.Backend.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	hook := b.afterList
	b.afterList = nil
	stale := b.staleLists > 0
	if stale {
		b.staleLists--
	}
	kept := objs[:0]
	for _, o := range objs {
		if b.unwritten[o.Key] || (stale && b.unlisted[o.Key]) {
			continue
		}
		kept = append(kept, o)
	}
	b.mu.Unlock()
	if hook != nil {
		hook()
	}
	return kept, nil
}

// replacingApplier is a fileApplier that can set a diverged copy aside,
// as the core's store does, and records each time it had to.
type replacingApplier struct {
	*fileApplier
	mu       sync.Mutex
	sums     map[string]map[ltx.TXID]ltx.Checksum
	replaced []string
}

func newReplacingApplier(t *testing.T) *replacingApplier {
	return &replacingApplier{fileApplier: newFileApplier(t), sums: map[string]map[ltx.TXID]ltx.Checksum{}}
}

func (a *replacingApplier) record(name string, pos ferry.Pos) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sums[name] == nil {
		a.sums[name] = map[ltx.TXID]ltx.Checksum{}
	}
	a.sums[name][pos.TXID] = pos.PostApplyChecksum
}

func (a *replacingApplier) seed(t *testing.T, d *testDB, n ltx.TXID) {
	a.fileApplier.seed(t, d, n)
	pos, _ := a.LocalPos(d.name)
	a.record(d.name, pos)
}

func (a *replacingApplier) ApplyLTX(ctx context.Context, name string, r io.Reader) (ferry.Pos, error) {
	pos, err := a.fileApplier.ApplyLTX(ctx, name, r)
	if err == nil {
		a.record(name, pos)
	}
	return pos, err
}

func (a *replacingApplier) ChecksumAt(name string, txid ltx.TXID) (ltx.Checksum, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sum, ok := a.sums[name][txid]
	return sum, ok, nil
}

func (a *replacingApplier) ReplaceDiverged(ctx context.Context, name string, r io.Reader, reason string) (ferry.Pos, string, error) {
	a.mu.Lock()
	a.replaced = append(a.replaced, reason)
	delete(a.sums, name)
	a.mu.Unlock()
	a.fileApplier.mu.Lock()
	delete(a.fileApplier.pos, name)
	err := os.Remove(a.path(name))
	a.fileApplier.mu.Unlock()
	if err != nil {
		return ferry.Pos{}, "", err
	}
	pos, err := a.ApplyLTX(ctx, name, r)
	return pos, "lost+found/" + name, err
}

func (a *replacingApplier) replacements() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.replaced...)
}

var _ ferry.HistoryReplacer = (*replacingApplier)(nil)

// followRace is a writer uploading a database and a follower reading the
// same bucket through a racingBackend.
type followRace struct {
	ctx    context.Context
	writer *Replicator
	d      *testDB
	race   *racingBackend
	follow *Replicator
	a      *replacingApplier
}

func newFollowRace(t *testing.T, name string) *followRace {
	t.Helper()
	w, layout, fb := newFileReplicator(t, testOptions())
	race := newRacingBackend(fb)
	return &followRace{
		ctx: context.Background(), writer: w, d: newTestDB(t, layout, name), race: race,
		follow: New(race, ferry.Layout{Dir: t.TempDir()}, testOptions()),
		a:      newReplacingApplier(t),
	}
}

// upload commits one transaction on the writer and uploads it as one L0
// object.
func (f *followRace) upload(t *testing.T) {
	t.Helper()
	f.d.insert(2, 200)
	if err := f.writer.Sync(f.ctx, f.d.name); err != nil {
		t.Fatal(err)
	}
}

// inFlight hides the object the bucket's head announces, as between the
// writer's head PUT and its object PUT.
func (f *followRace) inFlight(t *testing.T) string {
	t.Helper()
	h, _, ok, err := readHead(f.ctx, f.race.Backend, f.follow.bucket.keys.head(f.d.name))
	if err != nil || !ok {
		t.Fatalf("read head: %v %v", ok, err)
	}
	key := f.follow.bucket.keys.ltx(f.d.name, 0, h.LastMin, h.TXID)
	f.race.mu.Lock()
	f.race.unwritten[key] = true
	f.race.mu.Unlock()
	return key
}

func (f *followRace) mustFollow(t *testing.T, want ferry.Pos) {
	t.Helper()
	pos, _, err := f.follow.Follow(f.ctx, f.d.name, f.a)
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	if r := f.a.replacements(); len(r) > 0 {
		t.Fatalf("follow set the local copy aside: %q", r)
	}
	if pos != want {
		t.Fatalf("follow reached %v, want %v", pos, want)
	}
	if st := f.follow.Stats(); st.Divergences != 0 {
		t.Fatalf("follow counted %d divergences", st.Divergences)
	}
	mustEqualFile(t, f.a.path(f.d.name), f.d.history[want.TXID])
}

// TestFollowHeadAnnouncesObjectInFlight: a follower that polls between a
// writer's head PUT and its L0 PUT sees a head whose newest object is not
// there yet. That is news not yet visible, not a conflict: the follower
// applies what is there and takes the rest on a later poll.
func TestFollowHeadAnnouncesObjectInFlight(t *testing.T) {
	f := newFollowRace(t, "race/inflight.db")
	for i := 0; i < 3; i++ {
		f.upload(t)
	}
	f.a.seed(t, f.d, 2)
	current := f.d.pos // 4: CREATE TABLE, then three uploads of one transaction
	f.upload(t)
	f.upload(t)
	key := f.inFlight(t)

	// Behind by more than the object in flight: applies up to it.
	f.mustFollow(t, ferry.Pos{TXID: current.TXID + 1, PostApplyChecksum: checksumOf(t, f.d, current.TXID+1)})
	// Exactly at the start of the object in flight: nothing to apply yet.
	f.mustFollow(t, ferry.Pos{TXID: current.TXID + 1, PostApplyChecksum: checksumOf(t, f.d, current.TXID+1)})

	f.race.mu.Lock()
	delete(f.race.unwritten, key)
	f.race.mu.Unlock()
	f.mustFollow(t, f.d.pos)
}

// TestFollowListingOlderThanHead: an upload that lands between a
// follower's listing and its read of the head must not make the head
// announce objects the listing lacks.
func TestFollowListingOlderThanHead(t *testing.T) {
	f := newFollowRace(t, "race/list.db")
	f.upload(t)
	f.upload(t)
	f.a.seed(t, f.d, 2)
	f.upload(t)
	before := f.d.pos
	f.race.mu.Lock()
	f.race.afterList = func() { f.upload(t) }
	f.race.mu.Unlock()
	pos, _, err := f.follow.Follow(f.ctx, f.d.name, f.a)
	if err != nil || len(f.a.replacements()) > 0 {
		t.Fatalf("follow with an upload between listing and head: %v; set aside: %q", err, f.a.replacements())
	}
	if pos.TXID < before.TXID {
		t.Fatalf("follow reached %v, want at least %v", pos, before)
	}
	f.mustFollow(t, f.d.pos)
}

// TestFollowStaleListing: a listing that lacks objects older than the
// head's newest is read again rather than taken as a bucket that lost the
// history after the local position.
func TestFollowStaleListing(t *testing.T) {
	f := newFollowRace(t, "race/stale.db")
	f.upload(t)
	f.a.seed(t, f.d, 2)
	f.upload(t)
	f.upload(t)
	f.upload(t)
	// Hide the object right after the follower's position from the first
	// two listings.
	f.race.mu.Lock()
	f.race.unlisted[f.follow.bucket.keys.ltx(f.d.name, 0, 3, 3)] = true
	f.race.staleLists = 2
	f.race.mu.Unlock()
	f.mustFollow(t, f.d.pos)
}

// TestFollowRealConflictStillDetected: a follower whose local history
// really differs from the bucket's still sets it aside, also while the
// head's newest object is in flight.
func TestFollowRealConflictStillDetected(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight bool
		at       ltx.TXID // the diverged copy's TXID, relative to the bucket's
	}{
		{"behind", false, 2},
		{"behind-in-flight", true, 2},
		{"same-txid", false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFollowRace(t, "race/"+tc.name+".db")
			for i := 0; i < 3; i++ {
				f.upload(t)
			}
			if tc.inFlight {
				f.inFlight(t)
			}
			// Another history of the same length: other rows.
			other := newTestDB(t, ferry.Layout{Dir: t.TempDir()}, f.d.name)
			for other.pos.TXID < tc.at {
				other.exec("INSERT INTO t (v) VALUES ('elsewhere')")
			}
			f.a.seed(t, other, tc.at)
			_, _, err := f.follow.Follow(f.ctx, f.d.name, f.a)
			if err != nil {
				t.Fatalf("follow a diverged copy: %v", err)
			}
			r := f.a.replacements()
			if len(r) != 1 {
				t.Fatalf("diverged copy set aside %d times (%q), want once", len(r), r)
			}
			if f.follow.Stats().Divergences != 1 {
				t.Fatalf("divergences %d, want 1", f.follow.Stats().Divergences)
			}
			if !strings.Contains(r[0], "checksum") {
				t.Fatalf("reason %q does not name the checksums", r[0])
			}
		})
	}
}

// checksumOf returns d's database checksum after txid.
func checksumOf(t *testing.T, d *testDB, txid ltx.TXID) ltx.Checksum {
	t.Helper()
	data, ok := d.history[txid]
	if !ok {
		t.Fatalf("no history at %s", txid)
	}
	sum, err := ltx.ChecksumDatabase(strings.NewReader(string(data)), testPageSize, uint32(len(data)/testPageSize))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestFollowWhileUploading follows a database while its writer uploads
// one transaction after another, so that polls land between head and
// object PUTs for real; none may be taken for a conflict.
func TestFollowWhileUploading(t *testing.T) {
	f := newFollowRace(t, "race/live.db")
	f.upload(t)
	f.a.seed(t, f.d, 2)
	const uploads = 150
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < uploads; i++ {
			f.d.insert(1, 100)
			if err := f.writer.Sync(f.ctx, f.d.name); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	polls, errs := 0, 0
	var aside []string
	for running := true; running; polls++ {
		select {
		case <-done:
			running = false
		default:
		}
		if _, _, err := f.follow.Follow(f.ctx, f.d.name, f.a); err != nil {
			errs++
			t.Logf("poll %d: %v", polls, err)
		}
		if aside = f.a.replacements(); len(aside) > 0 {
			break
		}
	}
	<-done // the writer's files live in the test's temporary directories
	if len(aside) > 0 {
		t.Fatalf("poll %d set the local copy aside: %q", polls, aside)
	}
	if errs > 0 {
		t.Fatalf("%d of %d polls failed", errs, polls)
	}
	f.mustFollow(t, f.d.pos)
	t.Logf("%d polls during %d uploads", polls, uploads)
}
