package ferry

import "sync"

// CommitStats counts what a database's writer logged on this node since
// the process started, for metrics.
type CommitStats struct {
	// Transactions is how many committed transactions were captured.
	Transactions uint64
	// ChangeSets is how many LTX files they were written in, and Bytes
	// the size of those files.
	ChangeSets uint64
	Bytes      uint64
}

// commitCounters holds every database's CommitStats. Its zero value is
// ready to use.
type commitCounters struct {
	mu sync.Mutex
	m  map[string]*CommitStats
}

func (c *commitCounters) add(name string, txns, bytes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*CommitStats{}
	}
	st := c.m[name]
	if st == nil {
		st = &CommitStats{}
		c.m[name] = st
	}
	st.Transactions += txns
	st.ChangeSets++
	st.Bytes += bytes
}

// CommitStats returns the counts of every database this node has written.
func (s *Store) CommitStats() map[string]CommitStats {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	out := make(map[string]CommitStats, len(s.commits.m))
	for name, st := range s.commits.m {
		out[name] = *st
	}
	return out
}
