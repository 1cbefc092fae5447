package ferry

import (
	"fmt"
	"strings"
)

// Limits on names inside the mount. They keep every path well inside
// PATH_MAX and the bucket's 1,024-byte key limit.
const (
	MaxNameLen   = 255 // bytes in one path component
	MaxNameDepth = 16  // components in one path
)

// ValidateName checks a slash-separated database path relative to the
// mount root, such as "customer/2026/event.db". Every component must be
// non-empty, not "." or "..", free of control characters and backslashes,
// and at most MaxNameLen bytes; the path may have at most MaxNameDepth
// components and must not start or end with a slash.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	parts := strings.Split(name, "/")
	if len(parts) > MaxNameDepth {
		return fmt.Errorf("%w: %q is deeper than %d components", ErrInvalidName, name, MaxNameDepth)
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
		return fmt.Errorf("%w: path component longer than %d bytes", ErrInvalidName, MaxNameLen)
	}
	for _, r := range c {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: path component %q contains a control character or backslash", ErrInvalidName, c)
		}
	}
	return nil
}
