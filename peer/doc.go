// Package peer streams change sets from a database's lease holder to the
// nodes that read it, over one long-lived HTTP connection per holder.
//
// The holder's side is Server, an http.Handler; the reader's side is
// Client, which takes its *http.Client from its options, so that the
// command can wrap both (authentication, say). The wire format is in
// frame.go and described in docs/ARCHITECTURE.md ("Peer stream").
package peer
