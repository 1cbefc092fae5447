// Package replicate ships each database's LTX change sets to a bucket and
// rebuilds databases from it.
//
// The bucket uses Litestream v0.5's layout, so that stock `litestream
// restore` can read it:
//
//	<prefix>/<db>/<level %04x>/<minTXID %016x>-<maxTXID %016x>.ltx
//
// Level 0 holds one file per upload batch, levels 1 to 8 hold files
// compacted on time boundaries and level 9 holds snapshots, which always
// start at TXID 1. Unlike Litestream, every file keeps the rolling database
// checksum, so a restore is verified end to end.
//
// Beside the levels each database has one small object, <prefix>/<db>/head,
// that records the newest TXID the bucket holds, its checksum and the lease
// epoch of the writer that put it there. Uploads advance it with
// conditional writes, so a writer whose lease was superseded cannot add to
// the database's history; see upload.go.
package replicate
