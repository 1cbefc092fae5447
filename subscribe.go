package ferry

import "sync"

// subscriptions wakes whoever waits for a database's local log to grow.
// A database nobody subscribed to costs nothing; a wake-up is a
// non-blocking send on a channel of one, so a slow subscriber sees one
// coalesced wake-up and reads the position itself.
type subscriptions struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value whenever database
// name's local log or position changes (a commit becomes durable, a change
// set is applied, the copy is replaced). Wake-ups coalesce: after one, the
// subscriber reads LocalPos and the log. cancel ends the subscription; the
// channel is not closed.
func (s *Store) Subscribe(name string) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	s.subs.mu.Lock()
	if s.subs.subs == nil {
		s.subs.subs = make(map[string]map[chan struct{}]struct{})
	}
	m := s.subs.subs[name]
	if m == nil {
		m = make(map[chan struct{}]struct{})
		s.subs.subs[name] = m
	}
	m[c] = struct{}{}
	s.subs.mu.Unlock()
	return c, func() {
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		if m := s.subs.subs[name]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.subs.subs, name)
			}
		}
	}
}

// wake tells name's subscribers that its log changed.
func (s *subscriptions) wake(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.subs[name] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
