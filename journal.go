package ferry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// rollbackHotJournal undoes a transaction cut off by a crash: it copies the
// original pages saved in the rollback journal back into the database file,
// truncates it to its original size and removes the journal, as SQLite does
// when it finds a hot journal. It reports whether there was one.
func rollbackHotJournal(dbPath string) (bool, error) {
	jpath := dbPath + "-journal"
	j, err := os.Open(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("open journal: %w", err)
	}
	defer j.Close()
	fi, err := j.Stat()
	if err != nil {
		return false, fmt.Errorf("stat journal: %w", err)
	}
	size := fi.Size()

	hdr := make([]byte, journalHeaderMin)
	if n, _ := j.ReadAt(hdr, 0); n < len(hdr) || string(hdr[:8]) != string(journalMagic) {
		return false, nil // empty or zeroed: the transaction committed
	}
	db, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open database: %w", err)
	}
	defer db.Close()

	origSize := int64(-1)
	var off int64
	for {
		hdr := make([]byte, journalHeaderMin)
		if n, _ := j.ReadAt(hdr, off); n < len(hdr) || string(hdr[:8]) != string(journalMagic) {
			break
		}
		nRec := binary.BigEndian.Uint32(hdr[8:12])
		cksumInit := binary.BigEndian.Uint32(hdr[12:16])
		dbSize := binary.BigEndian.Uint32(hdr[16:20])
		sectorSize := int64(binary.BigEndian.Uint32(hdr[20:24]))
		pageSize := int64(binary.BigEndian.Uint32(hdr[24:28]))
		if sectorSize < 32 || sectorSize > 65536 || pageSize < 512 || pageSize > 65536 {
			break
		}
		if origSize < 0 {
			origSize = int64(dbSize) * pageSize
		}
		recSize := pageSize + 8
		off += sectorSize
		if nRec == 0xffffffff || nRec == 0 {
			nRec = uint32((size - off) / recSize)
		}
		rec := make([]byte, recSize)
		stop := false
		for i := uint32(0); i < nRec; i++ {
			if _, err := j.ReadAt(rec, off); err != nil {
				stop = true
				break
			}
			pgno := binary.BigEndian.Uint32(rec[0:4])
			data := rec[4 : 4+pageSize]
			if pgno == 0 || binary.BigEndian.Uint32(rec[4+pageSize:]) != journalChecksum(cksumInit, data) {
				stop = true
				break
			}
			if pgno <= dbSize {
				if _, err := db.WriteAt(data, int64(pgno-1)*pageSize); err != nil {
					return true, fmt.Errorf("restore page %d: %w", pgno, err)
				}
			}
			off += recSize
		}
		if stop {
			break
		}
		// The next header, if any, starts at a sector boundary.
		if rem := off % sectorSize; rem != 0 {
			off += sectorSize - rem
		}
		if off >= size {
			break
		}
	}
	if origSize >= 0 {
		if err := db.Truncate(origSize); err != nil {
			return true, fmt.Errorf("truncate database: %w", err)
		}
	}
	if err := db.Sync(); err != nil {
		return true, fmt.Errorf("sync database: %w", err)
	}
	if err := os.Remove(jpath); err != nil {
		return true, fmt.Errorf("remove journal: %w", err)
	}
	return true, nil
}

// journalChecksum is SQLite's cheap checksum of a journaled page: the
// initial value plus every 200th byte, counting back from the end.
func journalChecksum(init uint32, data []byte) uint32 {
	c := init
	for i := len(data) - 200; i > 0; i -= 200 {
		c += uint32(data[i])
	}
	return c
}
