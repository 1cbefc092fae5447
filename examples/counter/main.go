// Command counter is a small multi-tenant web app for Ferry: every tenant
// has its own SQLite database, <db-dir>/<tenant>.db, holding a counter.
// It knows nothing of replication: Ferry's proxy in front of it sends each
// write to the node that holds the tenant's lease, and the mount makes the
// databases appear on every node.
//
//	GET  /t/{tenant}   the tenant's count
//	POST /t/{tenant}   add one and return the new count
package main

import (
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	_ "github.com/mattn/go-sqlite3"
)

// tenantName is what a tenant may be called: it becomes a file name.
var tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func main() {
	listen := flag.String("listen", "localhost:8081", "address to serve on")
	dbDir := flag.String("db-dir", "/litefs", "directory of the tenant databases (the Ferry mount)")
	flag.Parse()
	app := &app{dir: *dbDir, dbs: map[string]*sql.DB{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /t/{tenant}", app.get)
	mux.HandleFunc("POST /t/{tenant}", app.increment)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "POST /t/<tenant> counts a visit; GET /t/<tenant> shows the count")
	})
	log.Printf("counter: serving on %s, databases in %s", *listen, *dbDir)
	if err := http.ListenAndServe(*listen, mux); err != nil {
		log.Fatal(err)
	}
}

type app struct {
	dir string
	mu  sync.Mutex
	dbs map[string]*sql.DB
}

// db opens a tenant's database once and keeps it open.
func (a *app) db(tenant string) (*sql.DB, error) {
	if !tenantName.MatchString(tenant) {
		return nil, errors.New("bad tenant name")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if db, ok := a.dbs[tenant]; ok {
		return db, nil
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(a.dir, tenant+".db")+"?_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	a.dbs[tenant] = db
	return db, nil
}

func (a *app) get(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, err := os.Stat(filepath.Join(a.dir, tenant+".db")); errors.Is(err, os.ErrNotExist) || !tenantName.MatchString(tenant) {
		fmt.Fprintln(w, 0)
		return
	}
	db, err := a.db(tenant)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var n int64
	if err := db.QueryRowContext(r.Context(), "SELECT n FROM counter").Scan(&n); err != nil && !errors.Is(err, sql.ErrNoRows) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, n)
}

func (a *app) increment(w http.ResponseWriter, r *http.Request) {
	db, err := a.db(r.PathValue("tenant"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// A POST is a write, so the proxy has sent it to the lease holder.
	var n int64
	_, err = db.ExecContext(r.Context(), "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
	if err == nil {
		err = db.QueryRowContext(r.Context(),
			"INSERT INTO counter(id, n) VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET n = n + 1 RETURNING n").Scan(&n)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, n)
}
