package ferry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// defaultCheckpointDelay is how long LTX files may stay in the log
// unsynced, with their change sets held by the pending log, before the
// store's checkpoint syncs them all at once.
const defaultCheckpointDelay = 500 * time.Millisecond

// maxUnsyncedPending bounds a database's pending log while its LTX files
// wait for the checkpoint; past it the flusher syncs as it writes.
const maxUnsyncedPending = 4 << 20

// syncFilesOneByOne is how many unsynced files are synced one by one; for
// more, one syncfs of the data directory's filesystem is cheaper.
const syncFilesOneByOne = 8

// unsyncedFile is an LTX file renamed into the log without a sync.
type unsyncedFile struct {
	path string
	seq  uint64 // order in which the database wrote it
}

// kickCheckpoint wakes the checkpoint.
func (s *Store) kickCheckpoint() {
	select {
	case s.checkpointKick <- struct{}{}:
	default:
	}
}

// checkpointLoop syncs the LTX files the background flusher wrote without a
// sync, for every database with one syncfs, and then empties the databases'
// pending logs. It runs only after a flush and sleeps otherwise, so idle
// databases cost nothing.
func (s *Store) checkpointLoop(ctx context.Context) {
	delay := s.opts.CheckpointDelay
	if delay <= 0 {
		delay = defaultCheckpointDelay
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.checkpointKick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if err := s.checkpoint(); err != nil {
			s.logger.Error("checkpoint local LTX log", "err", err)
		}
		if s.closeIdle() {
			s.kickCheckpoint() // come back for databases still active
		}
	}
}

// checkpoint makes the files every database wrote without a sync durable.
// The files written before the syncfs are durable after it; a database that
// wrote more meanwhile syncs those itself when it settles.
func (s *Store) checkpoint() error {
	marks := make(map[*DB]uint64)
	for _, db := range s.allDBs() {
		db.mu.Lock()
		if len(db.unsynced) > 0 && db.broken == nil {
			marks[db] = db.unsyncedSeq
		}
		db.mu.Unlock()
	}
	if len(marks) == 0 {
		return nil
	}
	if err := syncFS(s.layout.Dir); err != nil {
		return err
	}
	var errs []error
	for db, seq := range marks {
		db.mu.Lock()
		i := 0
		for i < len(db.unsynced) && db.unsynced[i].seq <= seq {
			i++
		}
		db.unsynced = append(db.unsynced[:0], db.unsynced[i:]...)
		var err error
		switch {
		case db.broken != nil:
		case len(db.queue) > 0:
			// Flushes the queue and settles: the pending log is emptied
			// only once everything it holds is in durable files.
			err = db.flushGroupLocked(true)
		default:
			err = db.settleLocked()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", db.name, err))
		}
		db.mu.Unlock()
	}
	return errors.Join(errs...)
}

// closeIdle closes the files the store holds open for each database that
// saw no commit since the last pass and has nothing waiting, so that an
// idle database costs no file descriptor; they are opened again when
// needed. It reports whether some database still holds files open because
// it was active.
func (s *Store) closeIdle() (again bool) {
	for _, db := range s.allDBs() {
		db.mu.Lock()
		switch {
		case db.file == nil && db.posFile == nil && db.pending == nil:
		case db.active:
			db.active = false
			again = true
		case len(db.queue) > 0 || len(db.unsynced) > 0 || db.pendingSize > 0 || db.journalActive ||
			db.broken != nil || db.follow.handles > 0 || db.state == stateQuarantined:
			again = db.broken == nil && db.state != stateQuarantined
		default:
			db.closeFilesLocked()
		}
		db.mu.Unlock()
	}
	return again
}

// syncFiles makes files durable, one by one when they are few and with one
// syncfs of dir's filesystem otherwise. A file removed meanwhile (its
// change sets uploaded and expired) needs no sync.
func syncFiles(dir string, files []unsyncedFile) error {
	if len(files) > syncFilesOneByOne {
		return syncFS(dir)
	}
	for _, u := range files {
		f, err := os.Open(u.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("sync LTX file: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync LTX file %s: %w", u.path, err)
		}
	}
	return nil
}

// syncFS syncs the filesystem that holds dir with syncfs(2): one journal
// commit for every database's new files.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open data directory: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
