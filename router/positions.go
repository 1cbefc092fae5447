package router

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ferrydb/ferry/ltx"
)

// CookieName is the cookie that carries the last TXID a client wrote to
// each database (see formatWritten).
const CookieName = "__ferry_txid"

// HeaderName is the request and response header that carries the same
// list as the cookie, for API clients that keep no cookies.
const HeaderName = "Ferry-Txid"

// maxWritten bounds how many databases the cookie remembers; the ones
// written longest ago drop out first, keeping the cookie small.
const maxWritten = 32

// written is a client's last written TXID per database, most recent last.
type written []writtenPos

type writtenPos struct {
	name string
	txid ltx.TXID
}

// get returns the TXID the client last wrote to database name.
func (w written) get(name string) (ltx.TXID, bool) {
	for _, p := range w {
		if p.name == name {
			return p.txid, true
		}
	}
	return 0, false
}

// with returns w with name's position moved to the end and set to txid.
func (w written) with(name string, txid ltx.TXID) written {
	out := make(written, 0, len(w)+1)
	for _, p := range w {
		if p.name != name {
			out = append(out, p)
		}
	}
	out = append(out, writtenPos{name, txid})
	if len(out) > maxWritten {
		out = out[len(out)-maxWritten:]
	}
	return out
}

// formatWritten encodes w as "<name>:<txid hex>!<name>:<txid hex>…" with
// query-escaped names, which keeps ':' and '!' out of them and the value
// a valid cookie value.
func formatWritten(w written) string {
	parts := make([]string, len(w))
	for i, p := range w {
		parts[i] = url.QueryEscape(p.name) + ":" + strconv.FormatUint(uint64(p.txid), 16)
	}
	return strings.Join(parts, "!")
}

// parseWritten decodes formatWritten's encoding. Malformed entries are
// skipped: a bad cookie only loses read-your-writes, never the request.
func parseWritten(v string) written {
	var w written
	for _, part := range strings.Split(strings.TrimSpace(v), "!") {
		esc, hex, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(esc)
		if err != nil || name == "" {
			continue
		}
		txid, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		w = w.with(name, ltx.TXID(txid))
	}
	return w
}

// requestWritten reads the positions a request carries: the header's
// entries win over the cookie's for the same database.
func requestWritten(r *http.Request) written {
	var w written
	if c, err := r.Cookie(CookieName); err == nil {
		w = parseWritten(c.Value)
	}
	for _, p := range parseWritten(r.Header.Get(HeaderName)) {
		w = w.with(p.name, p.txid)
	}
	return w
}
