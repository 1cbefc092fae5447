package ltx

import (
	"fmt"
	"os"
)

// ReadFileEnds reads the header and trailer of the LTX file at path
// without decoding its pages: enough to follow a chain of files by TXID
// and checksum. It does not verify the file's checksum.
func ReadFileEnds(path string) (Header, Trailer, error) {
	var hdr Header
	var trailer Trailer
	f, err := os.Open(path)
	if err != nil {
		return hdr, trailer, err
	}
	defer f.Close()
	b := make([]byte, HeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return hdr, trailer, fmt.Errorf("read header of %s: %w", path, err)
	}
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, trailer, fmt.Errorf("%s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return hdr, trailer, err
	}
	b = b[:TrailerSize]
	if _, err := f.ReadAt(b, fi.Size()-TrailerSize); err != nil {
		return hdr, trailer, fmt.Errorf("read trailer of %s: %w", path, err)
	}
	if err := trailer.UnmarshalBinary(b); err != nil {
		return hdr, trailer, fmt.Errorf("%s: %w", path, err)
	}
	return hdr, trailer, nil
}
