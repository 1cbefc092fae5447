package ferry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferrydb/ferry/ltx"
)

// A reader that fell too far behind its lease holder's log gets a snapshot
// instead of change sets. Whether its old copy must be set aside depends on
// what the copy holds: if its newest state is exactly what it last applied
// from another node or the bucket, it holds no commit of its own and is
// simply replaced; if it committed on its own since (a former holder), the
// commits may be the only copy of acknowledged writes, and it is set aside
// as diverged.

// appliedPosName is the file, in a database's metadata directory, that
// records the position of the last change set applied from elsewhere. It
// is written without a sync: a record lost to a crash only makes the next
// replacement set the copy aside, which is the safe side.
const appliedPosName = "applied-pos"

// recordAppliedLocked notes that the database's position pos came from
// elsewhere.
func (d *DB) recordAppliedLocked(pos Pos) error {
	path := filepath.Join(d.store.layout.MetaDir(d.name), appliedPosName)
	if err := os.WriteFile(path, []byte(pos.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("record applied position: %w", err)
	}
	return nil
}

// appliedLocked reports whether the database's current position is the
// last one it applied from elsewhere.
func (d *DB) appliedLocked() bool {
	b, err := os.ReadFile(filepath.Join(d.store.layout.MetaDir(d.name), appliedPosName))
	if err != nil {
		return false
	}
	pos, err := ParsePos(strings.TrimSpace(string(b)))
	return err == nil && !pos.IsZero() && pos == d.pos
}

// ReplaceBehind replaces database name with the snapshot read from r, an
// LTX file starting at TXID 1 sent by the node that holds the lease, when
// the local copy is exactly the state it last applied from elsewhere: the
// old log is dropped, nothing is set aside, and it returns "". A copy that
// committed on its own since is set aside as ReplaceDiverged does, and it
// returns where it went.
func (s *Store) ReplaceBehind(ctx context.Context, name string, r io.Reader, reason string) (Pos, string, error) {
	if err := ValidateName(name); err != nil {
		return Pos{}, "", err
	}
	d, err := s.dbForApply(name)
	if err != nil {
		return Pos{}, "", fmt.Errorf("replace copy of %q: %w", name, err)
	}
	d.mu.Lock()
	// Commits captured but not logged yet would make the copy its own.
	_ = d.catchUpWALLocked()
	mine := !d.appliedLocked() || len(d.queue) > 0
	d.mu.Unlock()
	if mine {
		return s.ReplaceDiverged(ctx, name, r, reason+"; the local copy has commits of its own")
	}
	pos, err := s.applyLocking(ctx, name, func(d *DB) (Pos, error) {
		if !d.appliedLocked() || len(d.queue) > 0 {
			return Pos{}, errCommittedMeanwhile
		}
		if err := d.dropLogLocked(); err != nil {
			return Pos{}, err
		}
		d.pos, d.lastHdr = Pos{}, ltx.Header{}
		d.sums, d.sum, d.pageN = nil, 0, 0
		d.broken = nil
		return d.applyLocked(ctx, r)
	}, nil)
	if errors.Is(err, errCommittedMeanwhile) {
		return s.ReplaceDiverged(ctx, name, r, reason+"; the local copy has commits of its own")
	}
	if err != nil {
		return Pos{}, "", fmt.Errorf("replace copy of %q: %w", name, err)
	}
	s.logger.Info("local copy was behind the lease holder's log: replaced it with the holder's snapshot",
		"db", name, "reason", reason, "pos", pos)
	return pos, "", nil
}

// errCommittedMeanwhile ends a replacement that found the copy committed
// on its own after it was checked.
var errCommittedMeanwhile = errors.New("the local copy committed meanwhile")

// dropLogLocked removes the database's local log, pending log and checksum
// index, which a snapshot replaces. The bucket position stays: it is
// still a position of the database's history.
func (d *DB) dropLogLocked() error {
	files, err := d.store.listLog(d.name)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove LTX file: %w", err)
		}
	}
	for _, p := range []string{d.store.layout.PendingPath(d.name), d.indexPath()} {
		if err := removeIfExists(p); err != nil {
			return err
		}
	}
	if d.pending != nil {
		d.pending.Close()
		d.pending, d.pendingSize = nil, 0
	}
	return nil
}
