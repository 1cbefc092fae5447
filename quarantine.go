package ferry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/ferrydb/ferry/ltx"
)

// One tenant's damaged file must not stop the node. A database that cannot
// be opened (its header is impossible, say, or its recovery fails) is
// quarantined: the store leaves its files exactly as they are, makes no
// change set of it and so uploads nothing, the mount still serves it for
// reading, writes to it are refused as on a read-only database, and
// `ferry status` names it with the reason. Deleting it through the mount
// clears it; once the file is fixed, a restart takes it up again.

// Fault states, as Fault.State reports them.
const (
	// FaultQuarantined is a database that could not be opened; the store
	// leaves it untouched and refuses writes to it.
	FaultQuarantined = "quarantined"
	// FaultReadOnly is a database a commit of which could not be
	// captured; writes are refused until the background repair brings its
	// log level with it again.
	FaultReadOnly = "read-only"
)

// Fault is a database the store cannot fully serve, and why.
type Fault struct {
	Name   string
	State  string // FaultQuarantined or FaultReadOnly
	Reason string
}

// Faults returns the databases that are quarantined or read-only because
// of an error, sorted by name.
func (s *Store) Faults() []Fault {
	var faults []Fault
	for _, d := range s.allDBs() {
		d.mu.Lock()
		switch {
		case d.state == stateQuarantined:
			faults = append(faults, Fault{Name: d.name, State: FaultQuarantined, Reason: d.quarantined.Error()})
		case d.state == stateDatabase && d.broken != nil:
			faults = append(faults, Fault{Name: d.name, State: FaultReadOnly, Reason: d.broken.Error()})
		}
		d.mu.Unlock()
	}
	sort.Slice(faults, func(i, j int) bool { return faults[i].Name < faults[j].Name })
	return faults
}

// openDB opens database name found on disk, recovering it, or quarantines
// it when that fails. Only the end of ctx is returned as an error.
func (s *Store) openDB(ctx context.Context, name string) (*DB, error) {
	d := newDB(s, name)
	// The header is checked before recovery, which may write to the file
	// (rolling back a hot journal) or to the log.
	err := d.checkHeader()
	if err == nil {
		err = d.open(ctx)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			d.mu.Lock()
			d.closeFilesLocked()
			d.mu.Unlock()
			return nil, cerr
		}
		d.quarantine(err)
	}
	return d, nil
}

// checkHeader reads the database file's header and reports what makes it
// impossible to serve as a database.
func (d *DB) checkHeader() error {
	f, err := os.Open(d.store.layout.DBPath(d.name))
	if err != nil {
		return fmt.Errorf("open database file: %w", err)
	}
	defer f.Close()
	b := make([]byte, sqliteHeaderSize)
	if n, err := f.ReadAt(b, 0); n < sqliteHeaderSize {
		return fmt.Errorf("database header is cut short at %d bytes: %w", n, err)
	}
	h := dbHeader(b)
	if !h.valid() {
		return errors.New("file does not start with the SQLite header")
	}
	if ps := h.pageSize(); !ltx.IsValidPageSize(ps) {
		return fmt.Errorf("database header says page size %d; SQLite's are powers of two from %d to %d", ps, ltx.MinPageSize, ltx.MaxPageSize)
	}
	return nil
}

// quarantine gives up on serving the database after err: its files are
// closed and left as they are, and writes are refused from now on.
func (d *DB) quarantine(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.quarantineLocked(err)
}

func (d *DB) quarantineLocked(err error) {
	d.closeFilesLocked()
	d.state = stateQuarantined
	d.quarantined = err
	d.broken, d.repair = nil, repairSchedule{}
	d.queue = nil
	d.journalActive = false
	d.logger.Error("quarantined database: it cannot be opened, so it is left untouched and writes to it are refused", "err", err)
}

// closeFilesLocked closes every file the store holds open for the
// database, without writing anything.
func (d *DB) closeFilesLocked() {
	for _, f := range []**os.File{&d.file, &d.posFile, &d.pending, &d.follow.reader} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	d.pendingSize = 0
}

// quarantineError returns why writes to a quarantined database are
// refused, or nil.
func (d *DB) quarantineError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateQuarantined {
		return nil
	}
	return fmt.Errorf("%w: database %q is quarantined: %w", ErrReadOnly, d.name, d.quarantined)
}
