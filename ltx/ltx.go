// Package ltx reads and writes LTX files, the change-set format Ferry
// replicates.
package ltx

// TXID is a transaction ID. The first transaction of a database is 1.
type TXID uint64

// Checksum is a CRC-64 (ISO) checksum with bit 63 set.
type Checksum uint64
