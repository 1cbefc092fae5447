package ferry

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/ferrydb/ferry/ltx"
)

// WriteGuard decides whether this node may write a database right now. The
// lease package implements it; the core asks it before every write that
// would change a database, and the replicator asks it before every upload.
type WriteGuard interface {
	// CheckWrite returns the lease epoch under which this node may write
	// database name, acquiring the lease first if placement allows it. It
	// returns an error wrapping ErrReadOnly when another node holds the lease
	// or the lease cannot be had. It must be cheap when the lease is held.
	CheckWrite(ctx context.Context, name string) (epoch uint64, err error)
}

// WriteTerm is implemented by a WriteGuard whose right to write a
// database lasts until a known time, so that writes may bypass CheckWrite
// in between: the mount then serves a WAL by FUSE passthrough, and the
// store fences its writers (see WriterFence) when the term ends. The
// guard's Drain hook must call Store.FenceWriters before it gives a lease
// up early.
type WriteTerm interface {
	// WriteTerm reports, without acquiring anything, the epoch under which
	// this node holds database name's lease and until when (local clock) it
	// may write; ok is false when it may not write now.
	WriteTerm(name string) (epoch uint64, until time.Time, ok bool)
}

// LeaseState is where a database's write lease stands as far as this node
// knows, without asking anyone.
type LeaseState int

const (
	// LeaseFree means nobody holds the lease: a write here would try to
	// acquire it.
	LeaseFree LeaseState = iota
	// LeaseMine means this node holds the lease and may write now.
	LeaseMine
	// LeaseElsewhere means another node holds the lease, or a handoff
	// reserved it for another node.
	LeaseElsewhere
	// LeaseBarred means placement never lets this node hold the lease.
	LeaseBarred
)

// LeaseProbe is implemented by a WriteGuard that can say where a
// database's lease stands without acquiring anything, asking the
// authority or waiting. The mount asks it wherever an application only
// reads: reads never take a lease.
type LeaseProbe interface {
	// ProbeLease reports database name's lease as this node knows it now.
	ProbeLease(name string) LeaseState
}

// WriterFence stops an application's writers of a database without
// passing through FUSE: the FUSE layer implements it by taking SQLite's WAL
// write lock through the mount, so that a connection that could write past
// Ferry cannot start a write transaction.
type WriterFence interface {
	// FenceWriters takes the WAL write lock of database name if no writer
	// holds it now; busy is true when one does. unfence gives it back.
	FenceWriters(name string) (unfence func(), busy bool, err error)
}

// WALWriterLock lets the store append change sets to a WAL-mode
// database's WAL while connections keep it open, as a SQLite writer
// would. The FUSE layer implements it through the mount.
type WALWriterLock interface {
	// LockWALWriter takes SQLite's WAL write lock of database name without
	// waiting; busy is true when a connection holds it. shm is the WAL
	// index opened through the mount, valid until unlock is called.
	LockWALWriter(name string) (shm *os.File, unlock func(), busy bool, err error)
}

// Restorer fetches a database that is missing locally. The replicate
// package implements it over the bucket; the mount calls it when an
// application opens a database that is not on this node.
type Restorer interface {
	// Restore writes the latest state of database name to the file at path
	// and returns its position. It returns an error wrapping
	// ErrDatabaseNotFound when the bucket holds no such database, and
	// ErrDatabaseDirectory when it holds databases under name/ instead. The
	// file at path gets the mode the database's writer gave its file.
	Restore(ctx context.Context, name, path string) (Pos, error)
}

// CommitListener is told each time a change set becomes durable in a
// database's local LTX log. Listeners must not block: the replicator only
// records that name has new data and ships it on its own schedule.
type CommitListener interface {
	Committed(name string, pos Pos)
}

// CaptureListener is told each time a transaction is captured as a change
// set, at once, before the change set is durable in the local log (which
// CommitListener waits for). It is called with the database locked, so it
// must neither block nor call back into the store.
type CaptureListener interface {
	Captured(name string, pos Pos)
}

// Applier applies change sets that arrive from the bucket or from a peer to
// local databases. The core's Store implements it; the replicate package
// uses it to catch a database up before this node starts writing it.
type Applier interface {
	// LocalPos returns the local position of database name, or the zero Pos
	// and no error when the database does not exist on this node.
	LocalPos(name string) (Pos, error)

	// ApplyLTX applies one LTX file, read from r, to database name. The file
	// must start exactly one TXID after the local position and its
	// pre-apply checksum must match the local post-apply checksum; otherwise
	// nothing is changed and an error is returned.
	ApplyLTX(ctx context.Context, name string, r io.Reader) (Pos, error)
}

// HistoryReplacer settles a local history that is not a prefix of the
// authoritative one. The core's Store implements it; the replicator uses it
// when it catches a database up from the bucket.
type HistoryReplacer interface {
	// ChecksumAt returns the post-apply checksum the local log records at
	// txid; ok is false when no local change set ends exactly there.
	ChecksumAt(name string, txid ltx.TXID) (sum ltx.Checksum, ok bool, err error)

	// ReplaceDiverged sets the local copy of database name and its log
	// aside where an operator can find them, and replaces them with the
	// snapshot read from r. It returns the new position and where the old
	// copy went.
	ReplaceDiverged(ctx context.Context, name string, r io.Reader, reason string) (Pos, string, error)
}

// Resyncer is implemented by an Applier that knows whether a local copy
// holds commits of its own, and so whether a snapshot may replace it
// without setting it aside.
type Resyncer interface {
	// ReplaceBehind replaces database name with the snapshot read from r
	// if its copy is exactly what it last applied from elsewhere, and
	// otherwise sets the copy aside as HistoryReplacer.ReplaceDiverged
	// does. It returns the new position and where the old copy went, ""
	// when nothing was set aside.
	ReplaceBehind(ctx context.Context, name string, r io.Reader, reason string) (Pos, string, error)
}

// LeaseView tells who holds each database's write lease. The mount uses it
// for the read-only files that tell applications where writes must go.
type LeaseView interface {
	// Holder returns the node that holds database name's lease and the
	// lease's epoch; ok is false when nobody holds it.
	Holder(name string) (node string, epoch uint64, ok bool)
}

// DatabaseLocker takes SQLite's own locks on a database the way a writer
// would, so that the store can change the file under open connections
// without any of them seeing half of the change. The FUSE layer implements
// it through the mount, where the kernel keeps those locks.
type DatabaseLocker interface {
	// LockDatabase waits until no connection is reading or writing
	// database name and keeps new ones out until unlock is called. It gives
	// up when ctx ends.
	LockDatabase(ctx context.Context, name string) (unlock func(), err error)
}
