package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/fuse"
)

// sqliteMagic opens every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// runImport implements 'ferry import'.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ep := addEndpointFlags(fs)
	mnt := fs.String("mount", "", "the mount point (default: fuse.dir from -config, else "+DefaultFUSEDir+")")
	wait := fs.Duration("wait", time.Minute, "how long to wait for the bucket to hold the import; 0: do not wait")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ferry import [-config FILE] [-mount DIR] [-wait D] <database> <file>\n\n"+
			"Takes a SQLite file in as the database's next change set (or its first),\n"+
			"through the running mount: the file is checked, copied in one\n"+
			"transaction, compared with the copy, and replicated. Run it on the node\n"+
			"that holds, or can take, the database's lease.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("import: want a database and a file, got %d arguments", fs.NArg())
	}
	name, file := fs.Arg(0), fs.Arg(1)
	if err := ferry.ValidateName(name); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := checkSQLiteFile(ctx, file); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	dir := *mnt
	if dir == "" {
		cfg := NewConfig()
		if *ep.config != "" {
			var err error
			if cfg, err = ReadConfig(*ep.config); err != nil {
				return fmt.Errorf("import: %w", err)
			}
		}
		dir = cfg.FUSE.Dir
	}
	if fi, err := os.Stat(filepath.Join(dir, fuse.MetaDirName)); err != nil || !fi.IsDir() {
		return fmt.Errorf("import: %s is not a Ferry mount (is `ferry mount` running?)", dir)
	}

	pos, err := importFile(ctx, dir, name, file)
	if err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "imported %s as %s at %s\n", file, name, pos)
	if *wait <= 0 {
		return nil
	}
	c, base, err := ep.client()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := waitUploaded(ctx, c, base, name, pos, *wait); err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "the bucket holds %s at %s\n", name, pos)
	return nil
}

// checkSQLiteFile refuses a file that is not a sound SQLite database.
func checkSQLiteFile(ctx context.Context, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	head := make([]byte, len(sqliteMagic))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, []byte(sqliteMagic)) {
		return fmt.Errorf("%s is not a SQLite database: it does not start with the header %q", file, strings.TrimRight(sqliteMagic, "\x00"))
	}
	db, err := sql.Open("sqlite3", sqliteURI(file, "mode=ro"))
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("%s: integrity check: %w", file, err)
	}
	if res != "ok" {
		return fmt.Errorf("%s fails SQLite's integrity check: %s", file, res)
	}
	return nil
}

// importFile copies file over database name under the mount with SQLite's
// backup API, which writes every page in one transaction, so the store
// captures it as one change set. It compares the copy's content with the
// file's and returns the database's new position.
func importFile(ctx context.Context, mnt, name, file string) (ferry.Pos, error) {
	dst := filepath.Join(mnt, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return ferry.Pos{}, err
	}
	srcDB, err := sql.Open("sqlite3", sqliteURI(file, "mode=ro"))
	if err != nil {
		return ferry.Pos{}, err
	}
	defer srcDB.Close()
	dstDB, err := sql.Open("sqlite3", sqliteURI(dst, "_busy_timeout=10000"))
	if err != nil {
		return ferry.Pos{}, err
	}
	defer dstDB.Close()
	if err := backup(ctx, dstDB, srcDB); err != nil {
		if errors.Is(err, sqlite3.ErrReadonly) || strings.Contains(err.Error(), "readonly") {
			return ferry.Pos{}, fmt.Errorf("%w: another node holds the lease; run the import there", err)
		}
		return ferry.Pos{}, err
	}
	want, err := contentHash(ctx, srcDB)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("read %s: %w", file, err)
	}
	got, err := contentHash(ctx, dstDB)
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("read the copy: %w", err)
	}
	if got != want {
		return ferry.Pos{}, errors.New("the copy's content differs from the file's")
	}
	b, err := os.ReadFile(filepath.Join(mnt, fuse.MetaDirName, "pos", filepath.FromSlash(name)))
	if err != nil {
		return ferry.Pos{}, fmt.Errorf("read position: %w", err)
	}
	return ferry.ParsePos(strings.TrimSpace(string(b)))
}

func sqliteURI(path, query string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + query
}

// backup copies src's main database over dst's in one step.
func backup(ctx context.Context, dstDB, srcDB *sql.DB) error {
	dc, err := dstDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	sc, err := srcDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	return dc.Raw(func(d any) error {
		return sc.Raw(func(s any) error {
			b, err := d.(*sqlite3.SQLiteConn).Backup("main", s.(*sqlite3.SQLiteConn), "main")
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			_, stepErr := b.Step(-1)
			if err := errors.Join(stepErr, b.Finish()); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			return nil
		})
	})
}

// contentHash hashes the schema and every table's rows, in storage order,
// which a page-by-page copy keeps.
func contentHash(ctx context.Context, db *sql.DB) (string, error) {
	h := sha256.New()
	rows, err := db.QueryContext(ctx, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
	if err != nil {
		return "", err
	}
	var tables []string
	for rows.Next() {
		var typ, name, tbl, stmt string
		if err := rows.Scan(&typ, &name, &tbl, &stmt); err != nil {
			rows.Close()
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", typ, name, tbl, stmt)
		if typ == "table" && !strings.HasPrefix(name, "sqlite_") {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	for _, t := range tables {
		if err := hashRows(ctx, db, h, t); err != nil {
			return "", fmt.Errorf("table %s: %w", t, err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func hashRows(ctx context.Context, db *sql.DB, h io.Writer, table string) error {
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for _, v := range vals {
			fmt.Fprintf(h, "%T:%v\x00", v, v)
		}
	}
	return rows.Err()
}

// waitUploaded waits until the bucket holds database name at pos or
// later, as the local node's status endpoint reports.
func waitUploaded(ctx context.Context, c *http.Client, base, name string, pos ferry.Pos, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		var rep statusReport
		_, err := doStatusRequest(ctx, c, http.MethodGet, base+"/v1/status", nil, &rep)
		if err == nil {
			for _, d := range rep.Databases {
				if d.Name == name && d.Bucket != nil && d.Bucket.TXID >= pos.TXID {
					if d.Bucket.TXID == pos.TXID && d.Bucket.PostApplyChecksum != pos.PostApplyChecksum {
						return fmt.Errorf("the bucket holds %s at %s, not %s", name, d.Bucket, pos)
					}
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("not uploaded after %s: %w", wait, err)
			}
			return fmt.Errorf("not uploaded after %s; it stays in the local log and is retried", wait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
