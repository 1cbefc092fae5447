package ferry

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names inside the mount. They keep every path well inside
// PATH_MAX and the bucket's 1,024-byte key limit.
const (
	MaxNameLen   = 255 // bytes in one path component
	MaxNameDepth = 16  // components in one path
)

// ErrNameTooLong is returned, wrapped together with ErrInvalidName, for a
// name with a component longer than MaxNameLen bytes or more than
// MaxNameDepth components. The FUSE layer reports it as ENAMETOOLONG
// rather than EINVAL, as other filesystems do.
var ErrNameTooLong = errors.New("name too long")

// ValidateName checks a slash-separated database path relative to the
// mount root, such as "customer/2026/event.db". Every component must be
// non-empty, not "." or "..", valid UTF-8 free of control characters (C0,
// DEL and C1) and backslashes, and at most MaxNameLen bytes; the path may
// have at most MaxNameDepth components and must not start or end with a
// slash.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	parts := strings.Split(name, "/")
	if len(parts) > MaxNameDepth {
		return fmt.Errorf("%w: %w: %q is deeper than %d components", ErrInvalidName, ErrNameTooLong, name, MaxNameDepth)
	}
	for _, p := range parts {
		if err := ValidateComponent(p); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
	}
	return nil
}

// ValidateComponent checks a single path component (see ValidateName).
func ValidateComponent(c string) error {
	switch {
	case c == "":
		return fmt.Errorf("%w: empty path component", ErrInvalidName)
	case c == "." || c == "..":
		return fmt.Errorf("%w: path component %q is not allowed", ErrInvalidName, c)
	case len(c) > MaxNameLen:
		return fmt.Errorf("%w: %w: path component longer than %d bytes", ErrInvalidName, ErrNameTooLong, MaxNameLen)
	case !utf8.ValidString(c):
		// S3 keys must be UTF-8: such a database could never be uploaded.
		return fmt.Errorf("%w: path component %q is not valid UTF-8", ErrInvalidName, c)
	}
	for _, r := range c {
		// C1 controls (U+0080–U+009F) are refused like C0 ones: S3
		// servers reject keys holding them, and terminals interpret them.
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\\' {
			return fmt.Errorf("%w: path component %q contains a control character or backslash", ErrInvalidName, c)
		}
	}
	return nil
}
