package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// Sink is what a reader applies the stream to; the core's Store
// implements it.
type Sink interface {
	ferry.Applier
	ferry.HistoryReplacer
	ferry.Resyncer
}

// ClientOptions configures a Client.
type ClientOptions struct {
	// Sink is the local store.
	Sink Sink
	// HTTP sends the stream requests; nil means a client without
	// timeouts (the stream is long-lived; liveness is the heartbeat's).
	HTTP *http.Client
	// Holder returns the advertised URL of the node that holds database
	// name's lease, or false when it is this node, unknown or has no URL.
	Holder func(name string) (url string, ok bool)
	// Databases lists the databases this node has locally; each is
	// followed, the others cost nothing.
	Databases func() []string
	// Node is this node's ID, sent with each request for the holder's
	// logs.
	Node string
	// Resolve is how often the holder of each followed database is looked
	// up again, so that the reader follows a lease that moved. Zero means
	// 500 ms.
	Resolve time.Duration
	// Timeout is how long a stream may stay silent (no frame, not even a
	// heartbeat) before the reader drops it. Zero means 5 s.
	Timeout time.Duration
	// TempDir holds spooled large frames; empty means os.TempDir.
	TempDir string
	// Logger receives the client's logs.
	Logger *slog.Logger
}

// Client is the reader's side of the stream: it keeps one connection to
// each holder it follows databases from, and applies what arrives.
type Client struct {
	opts   ClientOptions
	logger *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream // by holder URL
	follow  map[string]string  // database -> holder URL it is followed from
	stats   ClientStats
}

// ClientStats counts what a client did.
type ClientStats struct {
	// ChangeSets and Snapshots are the frames applied.
	ChangeSets, Snapshots uint64
	// Diverged counts snapshots that replaced a copy that had diverged
	// from the holder's history.
	Diverged uint64
	// Errors counts streams dropped for an error (bad frame, failed
	// apply, lost connection).
	Errors uint64
}

// NewClient returns a client; call Run.
func NewClient(opts ClientOptions) *Client {
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{}
	}
	if opts.Resolve <= 0 {
		opts.Resolve = 500 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, logger: logger, streams: make(map[string]*stream), follow: make(map[string]string)}
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Live reports whether database name is being streamed now: its holder's
// stream is connected and has taken its subscription. The bucket follower
// leaves such databases alone.
func (c *Client) Live(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	url, ok := c.follow[name]
	if !ok {
		return false
	}
	st := c.streams[url]
	return st != nil && st.live[name]
}

// Following reports whether database name is followed from another
// node's stream, connected or not: its change sets are that node's.
func (c *Client) Following(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.follow[name]
	return ok
}

// Run follows the local databases' holders until ctx ends.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Resolve)
	defer t.Stop()
	for {
		c.resolve(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// resolve looks up the holder of every local database and moves each to
// the stream of its holder. One pass is one map lookup per database: an
// idle database costs no goroutine and no request.
func (c *Client) resolve(ctx context.Context) {
	names := c.opts.Databases()
	want := make(map[string]string, len(names))
	for _, name := range names {
		if url, ok := c.opts.Holder(name); ok {
			want[name] = strings.TrimRight(url, "/")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, url := range c.follow {
		if want[name] != url {
			delete(c.follow, name)
			if st := c.streams[url]; st != nil {
				st.remove(name)
			}
		}
	}
	for name, url := range want {
		if c.follow[name] == url {
			continue
		}
		c.follow[name] = url
		st := c.streams[url]
		if st == nil {
			st = &stream{c: c, url: url, names: make(map[string]bool), live: make(map[string]bool), kick: make(chan struct{}, 1)}
			c.streams[url] = st
			go st.run(ctx)
		}
		st.add(name)
	}
}

// stream is the connection to one holder. Its fields are guarded by the
// client's mutex.
type stream struct {
	c     *Client
	url   string
	names map[string]bool // followed from this holder
	live  map[string]bool // subscribed on the current connection
	sub   io.Writer       // the current connection's request body
	kick  chan struct{}
}

func (st *stream) add(name string) {
	st.names[name] = true
	if st.sub != nil {
		if err := st.subscribeLocked(name); err != nil {
			st.c.logger.Warn("peer stream: subscribe", "db", name, "err", err)
		}
	}
}

func (st *stream) remove(name string) {
	delete(st.names, name)
	delete(st.live, name)
}

// subscribeLocked sends database name's subscription with its local
// position. It writes to a pipe the HTTP client drains.
func (st *stream) subscribeLocked(name string) error {
	pos, err := st.c.opts.Sink.LocalPos(name)
	if err != nil {
		return err
	}
	sub := subscription{DB: name}
	if !pos.IsZero() {
		sub.Pos = pos.String()
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return err
	}
	if _, err := st.sub.Write(append(b, '\n')); err != nil {
		return err
	}
	st.live[name] = true
	return nil
}

// run keeps a connection to the holder, reconnecting with backoff, until
// ctx ends or nothing is followed from the holder any more.
func (st *stream) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := st.connect(ctx)
		st.c.mu.Lock()
		st.sub = nil
		clear(st.live)
		done := len(st.names) == 0
		if done {
			delete(st.c.streams, st.url)
		}
		if err != nil && ctx.Err() == nil && !done {
			st.c.stats.Errors++
		}
		st.c.mu.Unlock()
		if done || ctx.Err() != nil {
			return
		}
		st.c.logger.Warn("peer stream lost; the bucket follows meanwhile", "holder", st.url, "err", err, "retry_in", backoff)
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// connect runs one connection until it fails.
func (st *stream) connect(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.url+StreamPath, pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if st.c.opts.Node != "" {
		req.Header.Set("Ferry-Node", st.c.opts.Node)
	}
	// Subscriptions are written once the request is on its way: the pipe
	// blocks until the client reads the body.
	go func() {
		st.c.mu.Lock()
		defer st.c.mu.Unlock()
		st.sub = pw
		for name := range st.names {
			if err := st.subscribeLocked(name); err != nil {
				st.c.logger.Warn("peer stream: subscribe", "db", name, "err", err)
			}
		}
	}()
	// The heartbeat keeps the stream alive; silence beyond the timeout,
	// from the request on, drops it.
	alive := time.AfterFunc(st.c.opts.Timeout, cancel)
	defer alive.Stop()
	resp, err := st.c.opts.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("holder answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	st.c.logger.Info("peer stream connected", "holder", st.url)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		f, err := readFrame(br, st.c.opts.TempDir)
		if err != nil {
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("no heartbeat from holder for %s: %w", st.c.opts.Timeout, err)
			}
			return err
		}
		alive.Reset(st.c.opts.Timeout)
		err = st.handle(ctx, f)
		f.close()
		if err != nil {
			return err
		}
	}
}

// handle applies one frame.
func (st *stream) handle(ctx context.Context, f *frame) error {
	switch f.typ {
	case FrameHeartbeat:
		if f.size != 8 {
			return fmt.Errorf("%w: heartbeat of %d bytes", ErrBadFrame, f.size)
		}
		_ = binary.BigEndian.Uint64(f.mem)
		return nil
	case FrameError:
		st.c.mu.Lock()
		delete(st.live, f.name)
		st.c.mu.Unlock()
		st.c.logger.Info("holder does not stream database; the bucket follows it", "db", f.name, "holder", st.url, "reason", string(f.mem))
		return nil
	}
	if err := ferry.ValidateName(f.name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	// Apply only what the node this stream goes to holds the lease for
	// now: a node that lost the lease cannot advance this copy.
	st.c.mu.Lock()
	current := st.c.follow[f.name] == st.url
	st.c.mu.Unlock()
	if !current {
		return nil
	}
	sink := st.c.opts.Sink
	switch f.typ {
	case FrameChangeSet:
		if _, err := sink.ApplyLTX(ctx, f.name, f.payload()); err != nil {
			return fmt.Errorf("apply change set of %q from %s: %w", f.name, st.url, err)
		}
		st.c.mu.Lock()
		st.c.stats.ChangeSets++
		st.c.mu.Unlock()
	case FrameSnapshot:
		if f.size < 1 {
			return fmt.Errorf("%w: empty snapshot", ErrBadFrame)
		}
		r := f.payload()
		var reason [1]byte
		if _, err := io.ReadFull(r, reason[:]); err != nil {
			return err
		}
		// Replacing a copy sets it aside first: check the whole snapshot
		// before anything local changes.
		check := f.payload()
		if _, err := io.CopyN(io.Discard, check, 1); err != nil {
			return err
		}
		if err := ltx.NewDecoder(check).Verify(); err != nil {
			return fmt.Errorf("snapshot of %q from %s: %w", f.name, st.url, err)
		}
		local, err := sink.LocalPos(f.name)
		if err != nil {
			return err
		}
		if local.IsZero() {
			_, err = sink.ApplyLTX(ctx, f.name, r)
		} else {
			why := "behind the holder's log"
			if reason[0] == SnapshotDiverged {
				why = "diverged from the holder's history (split brain)"
			}
			var aside string
			if reason[0] == SnapshotDiverged {
				_, aside, err = sink.ReplaceDiverged(ctx, f.name, r, why)
			} else {
				// Merely behind: a copy that holds only what it applied
				// from elsewhere is replaced without being set aside.
				_, aside, err = sink.ReplaceBehind(ctx, f.name, r, why)
			}
			if err == nil && reason[0] == SnapshotDiverged {
				st.c.logger.Error("local copy diverged from the holder's history: replaced with the holder's snapshot",
					"db", f.name, "holder", st.url, "set_aside", aside)
			}
		}
		if err != nil {
			return fmt.Errorf("apply snapshot of %q from %s: %w", f.name, st.url, err)
		}
		st.c.mu.Lock()
		st.c.stats.Snapshots++
		if reason[0] == SnapshotDiverged {
			st.c.stats.Diverged++
		}
		st.c.mu.Unlock()
	}
	return nil
}
