package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// statusClientTimeout bounds one request to the local status endpoint.
const statusClientTimeout = 15 * time.Second

// runStatus implements 'ferry status'.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ep := addEndpointFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ferry status [-addr ADDR | -config FILE] [-json]\n\nShows cluster members, leases and replica positions as the local node sees them.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("status: unexpected argument %q", fs.Arg(0))
	}
	c, base, err := ep.client()
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var rep statusReport
	raw, err := doStatusRequest(ctx, c, http.MethodGet, base+"/v1/status", nil, &rep)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	return printStatus(stdout, rep, time.Now())
}

// endpointFlags locate the local node's status endpoint.
type endpointFlags struct {
	addr, config, dataDir *string
}

func addEndpointFlags(fs *flag.FlagSet) endpointFlags {
	return endpointFlags{
		addr:    fs.String("addr", "", "status endpoint: host:port or unix:PATH (default: from -config, else "+defaultStatusListen+" in the data directory)"),
		config:  fs.String("config", "", "read lease.status.listen from this ferry.yml"),
		dataDir: fs.String("data", "", "data directory, for a relative unix:PATH"),
	}
}

// client returns an HTTP client for the endpoint and its base URL. The
// config (-config, else the defaults) also gives the cluster section: when
// cluster credentials are configured, the client sends them, as the
// endpoint then requires.
func (e endpointFlags) client() (*http.Client, string, error) {
	full := NewConfig()
	if *e.config != "" {
		var err error
		if full, err = ReadConfig(*e.config); err != nil {
			return nil, "", err
		}
	}
	cfg := LeaseConfig{Status: StatusConfig{Listen: *e.addr}}
	dataDir := *e.dataDir
	if *e.addr == "" {
		// The same file and defaults as `ferry mount`, so a relative
		// socket path resolves under the same data directory.
		cfg = full.Lease
		if dataDir == "" {
			dataDir = full.Data.Dir
		}
	}
	network, addr, err := cfg.statusListen(dataDir)
	if err != nil {
		return nil, "", err
	}
	auth, err := full.Cluster.auth(os.LookupEnv, nil)
	if err != nil {
		return nil, "", err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	host := addr
	if network == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}
		host = "ferry" // any name: the dialer ignores it
	}
	var rt http.RoundTripper = tr
	if auth != nil {
		rt = auth.Transport(tr)
	}
	return &http.Client{Transport: rt, Timeout: statusClientTimeout}, "http://" + host, nil
}

// doStatusRequest sends body (if any) as JSON and decodes a 2xx answer into out.
// It returns the raw answer.
func doStatusRequest(ctx context.Context, c *http.Client, method, url string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the local node (is `ferry mount` running?): %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e statusError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized {
				return raw, fmt.Errorf("%s (pass the node's -config and set its cluster secret variable, $%s by default)", e.Error, defaultSecretEnv)
			}
			return raw, errors.New(e.Error)
		}
		return raw, fmt.Errorf("local node answered %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decode answer: %w", err)
		}
	}
	return raw, nil
}

// printStatus writes the report as readable tables.
func printStatus(w io.Writer, rep statusReport, now time.Time) error {
	fmt.Fprintf(w, "node %s", rep.Node)
	if rep.Region != "" {
		fmt.Fprintf(w, " (region %s)", rep.Region)
	}
	fmt.Fprintf(w, ", leases: %s", rep.Type)
	if rep.Type == "raft" {
		leader := rep.Leader
		if leader == "" {
			leader = "none"
		}
		fmt.Fprintf(w, ", leader %s, term %d", leader, rep.Term)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tVOTER\tREGION\tADDRESS\tHEALTH")
	for _, m := range rep.Members {
		health := "ok"
		if m.Failing {
			health = "unreachable"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Role, statusYesNo(m.Voter), statusDash(m.Region), statusDash(m.Address), health)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tHOLDER\tEPOCH\tEXPIRES\tLOCAL TXID/CHECKSUM\tBUCKET TXID/CHECKSUM\tBEHIND HOLDER\tLAG")
	for _, d := range rep.Databases {
		holder, epoch, expires := "-", "-", "-"
		if d.Holder != "" {
			holder = d.Holder
		}
		if d.Epoch != 0 {
			epoch = fmt.Sprint(d.Epoch)
		}
		if d.Expires != nil {
			expires = "in " + d.Expires.Sub(now).Round(100*time.Millisecond).String()
		} else if d.Holder != "" {
			expires = "never"
		}
		local, bucket, lag := "-", "-", "-"
		if d.Local != nil {
			local = d.Local.String()
		}
		if d.Error != "" {
			local = "error: " + d.Error
		}
		if d.Bucket != nil {
			bucket = d.Bucket.String()
		}
		if d.Lag != nil {
			lag = fmt.Sprint(*d.Lag)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, holder, epoch, expires, local, bucket, formatBehind(d), lag)
	}
	if len(rep.Databases) == 0 {
		fmt.Fprintln(tw, "(no databases)\t\t\t\t\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printFaults(w, rep.Databases)
}

// formatBehind shows a database's lag behind its holder as
// "TXIDStx/SECONDSs", with "?" for what is unknown; one word, so that
// scripts can split the table on blanks.
func formatBehind(d dbStatus) string {
	if d.LagTXIDs == nil {
		return "-"
	}
	sec := "?"
	if d.LagSeconds != nil {
		sec = strconv.FormatFloat(*d.LagSeconds, 'f', 3, 64)
	}
	return fmt.Sprintf("%dtx/%ss", *d.LagTXIDs, sec)
}

// printFaults lists the databases the node cannot fully serve, and why,
// below the main table, which keeps its columns.
func printFaults(w io.Writer, dbs []dbStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, d := range dbs {
		if d.State == "" {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(tw, "DATABASE\tSTATE\tREASON")
			header = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, d.State, d.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range dbs {
		if d.SetAside != "" {
			fmt.Fprintf(w, "\n%s: a local copy diverged from the bucket and was set aside (%d in all); newest: %s\n", d.Name, d.SetAsideCount, d.SetAside)
		}
	}
	return nil
}

func statusYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func statusDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
