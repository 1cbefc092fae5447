package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// StreamPath is the path of the stream endpoint.
const StreamPath = "/v1/stream"

// DefaultHeartbeat is how often a holder sends a heartbeat on a stream.
const DefaultHeartbeat = time.Second

// Source is what a holder streams from; the core's Store implements it.
type Source interface {
	Layout() ferry.Layout
	LocalPos(name string) (ferry.Pos, error)
	ChecksumAt(name string, txid ltx.TXID) (ltx.Checksum, bool, error)
	Watch(name string, wake func()) (cancel func())
	WriteSnapshot(ctx context.Context, name string, w io.Writer) (ferry.Pos, error)
	QueuedChangeSets(name string, after ltx.TXID) ([][]byte, error)
}

// Server is the holder's side of the stream, an http.Handler for
// StreamPath.
type Server struct {
	// Source is the local store.
	Source Source
	// Holds reports whether this node holds database name's lease now;
	// only such databases are streamed, so a node that lost its lease
	// cannot advance anyone's copy.
	Holds func(name string) bool
	// Heartbeat is the interval between heartbeats; zero means
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Logger receives the stream's logs.
	Logger *slog.Logger

	mu        sync.Mutex
	diverged  uint64
	snapshots uint64
}

// subscription is one line of a reader's request body.
type subscription struct {
	DB  string `json:"db"`
	Pos string `json:"pos"`
}

// Stats reports how many snapshots the server sent and how many of them
// were for a reader whose copy diverged.
func (s *Server) Stats() (snapshots, diverged uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots, s.diverged
}

// ServeHTTP serves one reader's stream until it goes away.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == SnapshotPath && r.Method == http.MethodGet {
		s.serveSnapshot(w, r)
		return
	}
	if r.URL.Path != StreamPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		http.Error(w, "full-duplex HTTP required", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ferry-stream")
	w.WriteHeader(http.StatusOK)
	c := &serverConn{
		s:      s,
		ctx:    r.Context(),
		peer:   r.RemoteAddr,
		fw:     newFrameWriter(w),
		flush:  rc.Flush,
		kick:   make(chan struct{}, 1),
		subs:   make(map[string]*serverSub),
		dirty:  make(map[string]bool),
		logger: s.logger().With("peer", r.RemoteAddr),
	}
	defer c.closeAll()
	readErr := make(chan error, 1)
	go func() { readErr <- c.readSubscriptions(r.Body) }()
	if err := c.run(readErr); err != nil && !errors.Is(err, context.Canceled) {
		c.logger.Info("peer stream ended", "err", err)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// serverSub is a reader's subscription to one database.
type serverSub struct {
	sent      ferry.Pos // what the reader has, as far as the holder knows
	handshake bool      // sent is the reader's claim, not yet checked
	cancel    func()
}

// serverConn is one reader's stream.
type serverConn struct {
	s      *Server
	ctx    context.Context
	peer   string
	fw     *frameWriter
	flush  func() error
	logger *slog.Logger

	kick  chan struct{}
	mu    sync.Mutex
	subs  map[string]*serverSub
	dirty map[string]bool
}

// readSubscriptions adds a subscription for each line the reader sends.
func (c *serverConn) readSubscriptions(body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		var sub subscription
		if err := json.Unmarshal(sc.Bytes(), &sub); err != nil {
			return fmt.Errorf("bad subscription: %w", err)
		}
		if err := ferry.ValidateName(sub.DB); err != nil {
			return fmt.Errorf("bad subscription: %w", err)
		}
		var pos ferry.Pos
		if sub.Pos != "" {
			p, err := ferry.ParsePos(sub.Pos)
			if err != nil {
				return fmt.Errorf("bad subscription to %q: %w", sub.DB, err)
			}
			pos = p
		}
		c.subscribe(sub.DB, pos)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

func (c *serverConn) subscribe(name string, pos ferry.Pos) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.subs[name]; old != nil {
		old.cancel()
	}
	sub := &serverSub{sent: pos, handshake: true}
	sub.cancel = c.s.Source.Watch(name, func() { c.mark(name) })
	c.subs[name] = sub
	c.dirty[name] = true
	c.poke()
}

// mark notes that name's log changed; it runs inside the store.
func (c *serverConn) mark(name string) {
	c.mu.Lock()
	c.dirty[name] = true
	c.mu.Unlock()
	c.poke()
}

func (c *serverConn) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *serverConn) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sub := range c.subs {
		sub.cancel()
	}
	c.subs = nil
}

// run sends what the reader lacks whenever a subscribed log changes, and
// a heartbeat when the stream is idle.
func (c *serverConn) run(readErr <-chan error) error {
	interval := c.s.Heartbeat
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	hb := time.NewTicker(interval)
	defer hb.Stop()
	if err := c.heartbeat(); err != nil {
		return err
	}
	for {
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case err := <-readErr:
			if err == io.EOF {
				// The reader closed its side; keep sending until it
				// hangs up.
				readErr = nil
				continue
			}
			return err
		case <-hb.C:
			if err := c.heartbeat(); err != nil {
				return err
			}
		case <-c.kick:
			if err := c.sendDirty(); err != nil {
				return err
			}
		}
	}
}

func (c *serverConn) heartbeat() error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixMilli()))
	if err := c.fw.write(FrameHeartbeat, "", bytesOf(b[:]), 8); err != nil {
		return err
	}
	return c.send()
}

func (c *serverConn) send() error {
	if err := c.fw.flush(); err != nil {
		return err
	}
	return c.flush()
}

// sendDirty brings every database marked dirty up to date. Frames of all
// of them go out before one flush, so a burst of commits is pipelined.
func (c *serverConn) sendDirty() error {
	c.mu.Lock()
	names := make([]string, 0, len(c.dirty))
	for name := range c.dirty {
		names = append(names, name)
	}
	clear(c.dirty)
	c.mu.Unlock()
	for _, name := range names {
		c.mu.Lock()
		sub := c.subs[name]
		c.mu.Unlock()
		if sub == nil {
			continue
		}
		if err := c.catchUp(name, sub); err != nil {
			return err
		}
	}
	return c.send()
}

// catchUp sends database name's change sets after what the reader has,
// or a snapshot when the log cannot continue the reader's position.
func (c *serverConn) catchUp(name string, sub *serverSub) error {
	if !c.s.Holds(name) {
		c.drop(name, sub)
		msg := "this node does not hold the lease"
		return c.fw.write(FrameError, name, bytesOf([]byte(msg)), int64(len(msg)))
	}
	local, err := c.s.Source.LocalPos(name)
	if err != nil {
		c.logger.Warn("peer stream: read position", "db", name, "err", err)
		return nil
	}
	if local.TXID == 0 {
		return nil // nothing here yet; the watch tells when there is
	}
	if sub.handshake {
		reason, ok := c.check(name, sub.sent, local)
		sub.handshake = false
		if !ok {
			return c.snapshot(name, sub, reason)
		}
	}
	files, err := c.s.Source.Layout().ListLog(name)
	if err != nil {
		c.logger.Warn("peer stream: list log", "db", name, "err", err)
		return nil
	}
	for _, f := range files {
		if f.MaxTXID <= sub.sent.TXID {
			continue
		}
		if f.MinTXID != sub.sent.TXID+1 {
			// A file that merges change sets some of which went out
			// from memory, or a gap: the queue may still continue.
			break
		}
		b, err := os.ReadFile(f.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return c.snapshot(name, sub, SnapshotBehind) // removed by retention meanwhile
		} else if err != nil {
			c.logger.Warn("peer stream: read log", "db", name, "err", err)
			return nil
		}
		if len(b) < ltx.TrailerSize {
			c.logger.Warn("peer stream: short LTX file", "path", f.Path)
			return nil
		}
		if err := c.fw.write(FrameChangeSet, name, bytesOf(b), int64(len(b))); err != nil {
			return err
		}
		sum := binary.BigEndian.Uint64(b[len(b)-ltx.TrailerSize:])
		sub.sent = ferry.Pos{TXID: f.MaxTXID, PostApplyChecksum: ltx.Checksum(sum)}
	}
	// Commits captured but not yet in the log go out now rather than
	// after the flusher's delay.
	queued, err := c.s.Source.QueuedChangeSets(name, sub.sent.TXID)
	if err != nil {
		c.logger.Warn("peer stream: read queued change sets", "db", name, "err", err)
		return nil
	}
	for _, b := range queued {
		if err := c.fw.write(FrameChangeSet, name, bytesOf(b), int64(len(b))); err != nil {
			return err
		}
		hdr := binary.BigEndian.Uint64(b[24:32]) // max TXID
		sum := binary.BigEndian.Uint64(b[len(b)-ltx.TrailerSize:])
		sub.sent = ferry.Pos{TXID: ltx.TXID(hdr), PostApplyChecksum: ltx.Checksum(sum)}
	}
	if n := len(files); n > 0 && files[n-1].MaxTXID > sub.sent.TXID {
		// The log has what neither its files nor the queue can send on
		// from the reader's position.
		return c.snapshot(name, sub, SnapshotBehind)
	}
	return nil
}

// check decides whether the log can continue the reader's claimed
// position pos; if not, it says why.
func (c *serverConn) check(name string, pos, local ferry.Pos) (reason byte, ok bool) {
	switch {
	case pos.TXID == 0:
		return SnapshotNew, false
	case pos.TXID > local.TXID:
		c.logger.Error("peer stream: reader is ahead of the holder: split brain, sending a snapshot", "db", name, "reader", pos, "holder", local)
		return SnapshotDiverged, false
	}
	sum, found, err := c.s.Source.ChecksumAt(name, pos.TXID)
	if err != nil || !found {
		return SnapshotBehind, false
	}
	if sum != pos.PostApplyChecksum {
		c.logger.Error("peer stream: reader's copy diverged from the holder's history: split brain, sending a snapshot",
			"db", name, "txid", pos.TXID, "reader_checksum", pos.PostApplyChecksum, "holder_checksum", sum)
		return SnapshotDiverged, false
	}
	return 0, true
}

// snapshot sends the whole database.
func (c *serverConn) snapshot(name string, sub *serverSub, reason byte) error {
	tmp, err := os.CreateTemp("", "ferry-snapshot-*.ltx")
	if err != nil {
		return fmt.Errorf("snapshot %q: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write([]byte{reason}); err != nil {
		return err
	}
	pos, err := c.s.Source.WriteSnapshot(c.ctx, name, tmp)
	if err != nil {
		// A transaction in progress, say; the next commit wakes us.
		c.logger.Warn("peer stream: snapshot", "db", name, "err", err)
		sub.handshake = true
		return nil
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if err := c.fw.write(FrameSnapshot, name, io.NewSectionReader(tmp, 0, size), size); err != nil {
		return err
	}
	c.s.mu.Lock()
	c.s.snapshots++
	if reason == SnapshotDiverged {
		c.s.diverged++
	}
	c.s.mu.Unlock()
	sub.sent = pos
	// Change sets that became durable while the snapshot was taken follow
	// at the next pass.
	c.mark(name)
	return nil
}

func (c *serverConn) drop(name string, sub *serverSub) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub.cancel()
	if c.subs[name] == sub {
		delete(c.subs, name)
	}
}
