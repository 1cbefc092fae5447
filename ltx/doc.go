// Package ltx reads and writes LTX files, the change-set format Ferry
// replicates.
//
// The format is LTX version 3 as written by github.com/superfly/ltx v0.5 and
// Litestream v0.5, and files are byte-compatible in both directions. A file
// holds a 100-byte header, page frames in ascending page order (each a 6-byte
// page header, a 4-byte compressed size and an LZ4 block), a zero page header,
// a page index of varint (pgno, offset, size) records and a 16-byte trailer
// with the post-apply database checksum and the file checksum.
//
// Encoders and decoders stream: they hold one page and the page index, never
// the whole file. Every decode validates the structure and the checksums and
// reports each kind of damage with its own error, all of which match
// ErrInvalidFile with errors.Is.
package ltx
