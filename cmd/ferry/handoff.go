package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/ferrydb/ferry"
)

// runHandoff implements 'ferry handoff <db> <node>'.
func runHandoff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("handoff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ep := addEndpointFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ferry handoff [-addr ADDR | -config FILE] <database> <node>\n\nMoves a database's write lease to another node. The holder stops writing\nfirst; the target then takes the lease before any other node may.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("handoff: want a database and a node, got %d arguments", fs.NArg())
	}
	db, node := fs.Arg(0), fs.Arg(1)
	if err := ferry.ValidateName(db); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if node == "" {
		return fmt.Errorf("handoff: empty node ID")
	}
	c, base, err := ep.client()
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if _, err := doStatusRequest(ctx, c, http.MethodPost, base+"/v1/handoff", handoffRequest{Database: db, Node: node}, nil); err != nil {
		return fmt.Errorf("handoff %s to %s: %w", db, node, err)
	}
	fmt.Fprintf(stdout, "handed %s off to %s\n", db, node)
	return nil
}
