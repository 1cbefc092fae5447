package ltx

import (
	"fmt"
	"strconv"
)

// FormatFilename returns the name of the LTX file for a TXID range:
// "%016x-%016x.ltx".
func FormatFilename(minTXID, maxTXID TXID) string {
	return fmt.Sprintf("%016x-%016x.ltx", uint64(minTXID), uint64(maxTXID))
}

// ParseFilename returns the TXID range named by an LTX filename, or an error
// wrapping ErrInvalidFilename.
func ParseFilename(name string) (minTXID, maxTXID TXID, err error) {
	if len(name) != 37 || name[16] != '-' || name[33:] != ".ltx" {
		return 0, 0, fmt.Errorf("%w: %q", ErrInvalidFilename, name)
	}
	lo, ok1 := parseHex16(name[0:16])
	hi, ok2 := parseHex16(name[17:33])
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w: %q: want 16 lowercase hex digits on each side", ErrInvalidFilename, name)
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("%w: %q: min TXID after max TXID", ErrInvalidFilename, name)
	}
	return TXID(lo), TXID(hi), nil
}

// parseHex16 parses exactly 16 lowercase hex digits.
func parseHex16(s string) (uint64, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}
