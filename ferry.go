// Package ferry holds the core types shared by every part of Ferry: the
// store of databases kept under the data directory, each database's
// replication position, and the hooks through which the FUSE layer reports
// what SQLite does to a database and its journal files.
//
// Implementations live in their own packages: fuse (the mount), replicate
// (the bucket and peers), lease (who may write), router (the HTTP shim) and
// ltx (the change-set file format, which depends on nothing here).
package ferry

import (
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/ltx"
)

// Pos is a database's replication position: the TXID of the last change set
// applied and the rolling checksum of the database after applying it.
type Pos struct {
	TXID              ltx.TXID     `json:"txid"`
	PostApplyChecksum ltx.Checksum `json:"postApplyChecksum"`
}

// IsZero reports whether p is the position of a database with no history.
func (p Pos) IsZero() bool { return p == Pos{} }

// String formats p as "TXID/CHECKSUM" in hex, the form used in the mount's
// position files and in `ferry status`.
func (p Pos) String() string {
	return fmt.Sprintf("%016x/%016x", uint64(p.TXID), uint64(p.PostApplyChecksum))
}

// Errors shared across packages. Callers match them with errors.Is.
var (
	// ErrReadOnly is returned for a write to a database this node may not
	// write, either because another node holds its lease or because the lease
	// lapsed. The FUSE layer reports it to SQLite as EROFS.
	ErrReadOnly = errors.New("database is read-only on this node")

	// ErrInvalidName is returned for a database or directory name that fails
	// validation (see ValidateName).
	ErrInvalidName = errors.New("invalid name")

	// ErrDatabaseNotFound is returned when a database exists neither locally
	// nor in the bucket.
	ErrDatabaseNotFound = errors.New("database not found")

	// ErrDatabaseDirectory is returned by a Restorer for a name under which
	// the bucket holds other databases but none of its own: a directory of
	// databases. It wraps ErrDatabaseNotFound.
	ErrDatabaseDirectory = fmt.Errorf("a directory of databases: %w", ErrDatabaseNotFound)

	// ErrStaleEpoch is returned when an operation carries a lease epoch older
	// than the current one: the caller's lease has been superseded.
	ErrStaleEpoch = errors.New("stale lease epoch")
)
