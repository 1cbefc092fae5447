package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/ltx"
)

// SnapshotPath is the path of the endpoint that serves one database's
// snapshot, for a reader that opens a database the bucket does not hold
// yet.
const SnapshotPath = "/v1/snapshot"

// serveSnapshot answers GET SnapshotPath?db=NAME with one snapshot frame.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("db")
	if err := ferry.ValidateName(name); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.Holds(name) {
		http.Error(w, "this node does not hold the lease of "+name, http.StatusNotFound)
		return
	}
	tmp, err := os.CreateTemp("", "ferry-snapshot-*.ltx")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write([]byte{SnapshotNew}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := s.Source.WriteSnapshot(r.Context(), name, tmp); err != nil {
		if errors.Is(err, ferry.ErrDatabaseNotFound) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ferry-stream")
	fw := newFrameWriter(w)
	if err := fw.write(FrameSnapshot, name, io.NewSectionReader(tmp, 0, size), size); err == nil {
		_ = fw.flush()
	}
}

// Fetch writes database name, as its lease holder has it now, to the
// file at path and returns its position. It is for a database the bucket
// does not hold yet; the error wraps ferry.ErrDatabaseNotFound when no
// other node holds its lease or the holder has no such database.
func (c *Client) Fetch(ctx context.Context, name, path string) (ferry.Pos, error) {
	base, ok := c.opts.Holder(name)
	if !ok {
		return ferry.Pos{}, fmt.Errorf("%q: %w", name, ferry.ErrDatabaseNotFound)
	}
	u := strings.TrimRight(base, "/") + SnapshotPath + "?db=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ferry.Pos{}, err
	}
	resp, err := c.opts.HTTP.Do(req)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("fetch %q from its holder: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ferry.Pos{}, fmt.Errorf("%q: holder has none: %w", name, ferry.ErrDatabaseNotFound)
	} else if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return ferry.Pos{}, fmt.Errorf("fetch %q from its holder: %s: %s", name, resp.Status, strings.TrimSpace(string(msg)))
	}
	f, err := readFrame(bufio.NewReader(resp.Body), c.opts.TempDir)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("fetch %q from its holder: %w", name, err)
	}
	defer f.close()
	if f.typ != FrameSnapshot || f.name != name || f.size < 1 {
		return ferry.Pos{}, fmt.Errorf("fetch %q from its holder: %w: not a snapshot of it", name, ErrBadFrame)
	}
	r := f.payload()
	if _, err := io.CopyN(io.Discard, r, 1); err != nil {
		return ferry.Pos{}, err
	}
	pos, err := writeSnapshotFile(r, path)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("fetch %q from its holder: %w", name, err)
	}
	return pos, nil
}

// writeSnapshotFile writes the pages of the LTX snapshot read from r to a
// new file at path. The decoder checks the file's checksum at the end; the
// caller checks the pages against the position (the store does when it
// starts the database's log from the file).
func writeSnapshotFile(r io.Reader, path string) (ferry.Pos, error) {
	dec := ltx.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	if err := dec.DecodeHeader(); err != nil {
		return ferry.Pos{}, err
	}
	hdr := dec.Header()
	if !hdr.IsSnapshot() {
		return ferry.Pos{}, fmt.Errorf("%w: not a snapshot", ErrBadFrame)
	}
	out, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return ferry.Pos{}, err
	}
	defer out.Close()
	data := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return ferry.Pos{}, err
		}
		if _, err := out.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return ferry.Pos{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return ferry.Pos{}, err
	}
	if err := out.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return ferry.Pos{}, err
	}
	if err := out.Sync(); err != nil {
		return ferry.Pos{}, err
	}
	return ferry.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: dec.Trailer().PostApplyChecksum}, nil
}
