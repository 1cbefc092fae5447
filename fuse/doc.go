// Package fuse serves a Ferry store as a FUSE filesystem. Applications open
// ordinary SQLite files under the mount; every write, truncate, sync and
// unlink of a database and its journal files reaches the store, which turns
// each committed transaction into an LTX change set.
//
// What the mount shows:
//
//   - Databases, in any directory: mkdir works, and every path component is
//     checked (no "..", no control characters or backslashes, at most 255
//     bytes, at most 16 levels). A file is a database when it starts with
//     the SQLite header, whatever its name; an empty new file becomes one
//     when SQLite writes its first page.
//   - The -journal, -wal and -shm files of each database.
//   - Any other file (an application's scratch files, a multi-database
//     transaction's super-journal "-mj…") as a plain local file that is not
//     replicated.
//   - The read-only directory .ferry (see MetaDirName): .ferry/pos/<name>
//     holds a database's position and .ferry/primary/<name> the node that
//     holds its write lease.
//
// On a node that may not write a database, SQLite reports a write as
// "attempt to write a readonly database" (SQLITE_READONLY) in the
// rollback-journal modes and for WAL connections opened while the node was
// read-only; a WAL connection opened while the node could write reports
// "disk I/O error" (EROFS). Either way nothing is written.
//
// The mount is built for speed: SQLite's byte-range locks are left to the
// kernel (lock requests are never forwarded, so locking costs no round
// trip, and blocking locks and locking_mode=EXCLUSIVE work across
// processes), reads are served from the kernel page cache, attributes and
// directory entries are cached, and the store drops those caches explicitly
// whenever it changes a file underneath the applications. Writes go
// through synchronously, never through a writeback cache, so the store
// sees each commit before SQLite does.
package fuse
