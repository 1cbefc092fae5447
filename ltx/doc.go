// Package ltx reads and writes LTX files, the change-set format Ferry
// replicates.
//
// The format is LTX version 3 as written by github.com/superfly/ltx v0.5 and
// Litestream v0.5, and files are byte-compatible in both directions. A file
// holds a 100-byte header, page frames in ascending page order (each a 6-byte
// page header, a 4-byte compressed size and an LZ4 block), a zero page header,
// a page index of varint (pgno, offset, size) records and a 16-byte trailer
// with the post-apply database checksum and the file checksum. Frames from
// older version 3 encoders, which hold an LZ4 frame and no size prefix, are
// read too.
//
// The parts:
//
//   - Encoder and Decoder stream a file through an io.Writer or io.Reader,
//     holding one page at a time. Only a Decoder whose Close returned nil
//     has seen an intact file.
//   - PageReader reads single pages by way of the page index.
//   - Compactor (and Compact) merges a contiguous run of files into one.
//   - Apply and ApplyWithIndex write a file onto a database file, checking
//     the pre-apply and post-apply checksums.
//   - ChecksumPage, ChecksumDatabase and ChecksumIndex compute the rolling
//     database checksum: the XOR of the CRC-64 of every page but the lock
//     page. ChecksumIndex keeps it current one page at a time and persists
//     it, so a restart need not reread the database.
//
// Every decode validates the structure and the checksums and reports each
// kind of damage with its own error, all of which match ErrInvalidFile with
// errors.Is. No input makes the package panic; FuzzDecoder checks this.
package ltx
