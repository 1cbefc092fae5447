package ferry

import "time"

// CommitTime returns when the transaction at database name's local
// position was committed by its writer: the timestamp in the header of
// the newest change set of the local log, which a replica keeps as the
// holder wrote it. ok is false when the database is unknown, has no
// history, or its newest change set is not the one at its position.
//
// A replica's lag in seconds is the holder's newest commit time minus
// this one.
func (s *Store) CommitTime(name string) (t time.Time, ok bool) {
	if ValidateName(name) != nil {
		return time.Time{}, false
	}
	d := s.DB(name)
	if d == nil {
		return time.Time{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pos.IsZero() || d.lastHdr.MaxTXID != d.pos.TXID || d.lastHdr.Timestamp == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(d.lastHdr.Timestamp), true
}
