package ferry

import "sync"

// subscriptions wakes whoever waits for a database's local log to grow.
// A database nobody watches costs nothing, and a watcher pays no
// goroutine per database: its callback is run in place.
type subscriptions struct {
	mu   sync.Mutex
	next uint64
	subs map[string]map[uint64]func()
}

// Watch calls wake whenever database name's local log or position changes:
// a transaction is captured, a commit becomes durable in the log, a change
// set is applied, the copy is replaced.
// wake runs on the goroutine that changed the database, possibly with the
// database locked, so it must neither block nor call into the store; it
// should note the name and let its own goroutine read the log. cancel ends
// the watch.
func (s *Store) Watch(name string, wake func()) (cancel func()) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if s.subs.subs == nil {
		s.subs.subs = make(map[string]map[uint64]func())
	}
	m := s.subs.subs[name]
	if m == nil {
		m = make(map[uint64]func())
		s.subs.subs[name] = m
	}
	s.subs.next++
	id := s.subs.next
	m[id] = wake
	return func() {
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		if m := s.subs.subs[name]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(s.subs.subs, name)
			}
		}
	}
}

// Subscribe is Watch with a channel: it receives a value whenever database
// name's log changes. Wake-ups coalesce, so after one the subscriber reads
// LocalPos and the log itself. The channel is not closed by cancel.
func (s *Store) Subscribe(name string) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	return c, s.Watch(name, func() {
		select {
		case c <- struct{}{}:
		default:
		}
	})
}

// watched reports whether anyone watches database name.
func (s *subscriptions) watched(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs[name]) > 0
}

// maxRecentBytes bounds the page data DB.recent keeps.
const maxRecentBytes = 16 << 20

// keepRecentLocked moves the queue into d.recent before a flush empties
// it, while the database is watched, and drops the oldest entries beyond
// maxRecentBytes.
func (d *DB) keepRecentLocked() {
	if !d.store.subs.watched(d.name) {
		d.recent, d.recentBytes = nil, 0
		return
	}
	for _, q := range d.queue {
		d.recent = append(d.recent, q)
		d.recentBytes += len(q.pages) * int(q.hdr.PageSize)
	}
	for len(d.recent) > 1 && d.recentBytes > maxRecentBytes {
		d.recentBytes -= len(d.recent[0].pages) * int(d.recent[0].hdr.PageSize)
		d.recent = d.recent[1:]
	}
}

// wake tells name's watchers that its log changed. The callbacks run
// after the lock is released, so that one may take a lock of its own that
// is held elsewhere while Watch or cancel is called.
func (s *subscriptions) wake(name string) {
	s.mu.Lock()
	m := s.subs[name]
	if len(m) == 0 {
		s.mu.Unlock()
		return
	}
	fs := make([]func(), 0, len(m))
	for _, f := range m {
		fs = append(fs, f)
	}
	s.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
