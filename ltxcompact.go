package ferry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ferrydb/ferry/ltx"
)

// localCompactMin is how many uploaded LTX files a database's local log
// gathers before they are merged into one.
const localCompactMin = 8

// compactUploaded merges the oldest run of local LTX files the bucket
// already holds into one file covering their TXIDs, so that the local log
// holds no file per transaction and stays about the size of the pages
// changed. The newest file and every file not yet uploaded stay as they
// are. The merged file is synced and its name made durable before the
// inputs are removed.
func (d *DB) compactUploaded(files []LogFile, uploaded ltx.TXID) error {
	if len(files) < 2 {
		return nil
	}
	var run []LogFile
	for _, f := range files[:len(files)-1] {
		if f.MaxTXID > uploaded || (len(run) > 0 && f.MinTXID != run[len(run)-1].MaxTXID+1) {
			// Not uploaded yet, or a gap the replicator may still fill:
			// a merged file must cover exactly the TXIDs of its inputs.
			break
		}
		run = append(run, f)
	}
	if len(run) < localCompactMin {
		return nil
	}
	min, max := run[0].MinTXID, run[len(run)-1].MaxTXID
	var inputs []io.Reader
	for _, f := range run {
		in, err := os.Open(f.Path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // expired meanwhile; the next pass looks again
			}
			return fmt.Errorf("compact local log: %w", err)
		}
		defer in.Close()
		inputs = append(inputs, bufio.NewReaderSize(in, 16<<10))
	}
	out, err := d.createLTX(min, max, ".tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(out, 64<<10)
	err = ltx.Compact(w, inputs...)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(out.Name(), d.store.layout.LTXPath(d.name, min, max))
	}
	if err == nil {
		err = syncDir(d.store.layout.LTXDir(d.name))
	}
	if err != nil {
		_ = os.Remove(out.Name())
		return fmt.Errorf("compact local log %s-%s: %w", min, max, err)
	}
	for _, f := range run {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("compact local log: remove %s: %w", f.Path, err)
		}
	}
	return nil
}
