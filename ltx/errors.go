package ltx

import (
	"errors"
	"fmt"
)

// ErrInvalidFile matches every error caused by a malformed or corrupt LTX
// file, whatever the specific cause.
var ErrInvalidFile = errors.New("invalid LTX file")

// Specific causes of an invalid file. Each error returned for bad input
// matches one of these and ErrInvalidFile.
var (
	ErrInvalidMagic        = errors.New("bad magic: not an LTX file")
	ErrInvalidHeaderFlags  = errors.New("unknown header flags")
	ErrInvalidPageSize     = errors.New("page size must be a power of two from 512 to 65536")
	ErrInvalidHeader       = errors.New("invalid header field")
	ErrInvalidTXID         = errors.New("invalid transaction ID range")
	ErrInvalidPageHeader   = errors.New("invalid page header")
	ErrPageOutOfOrder      = errors.New("page numbers out of order")
	ErrPageOutOfBounds     = errors.New("page number beyond commit size")
	ErrLockPage            = errors.New("lock page must not be encoded")
	ErrSnapshotIncomplete  = errors.New("snapshot does not hold every page up to its commit size")
	ErrCorruptPage         = errors.New("corrupt page data")
	ErrIndexMismatch       = errors.New("page index does not match page frames")
	ErrInvalidTrailer      = errors.New("invalid trailer")
	ErrChecksumMismatch    = errors.New("file checksum mismatch")
	ErrTrailingData        = errors.New("unexpected data after trailer")
	ErrTruncated           = errors.New("file is truncated")
	ErrPostApplyMismatch   = errors.New("post-apply checksum mismatch")
	ErrPreApplyMismatch    = errors.New("pre-apply checksum mismatch")
	ErrInvalidFilename     = errors.New("invalid LTX filename")
	ErrPageSizeMismatch    = errors.New("page sizes differ")
	ErrTXIDGap             = errors.New("gap in transaction IDs")
	ErrTXIDOverlap         = errors.New("overlapping transaction IDs")
	ErrInvalidChecksumFile = errors.New("invalid checksum index file")
)

// Errors about the use of an encoder or decoder rather than the file itself.
var (
	ErrEncoderClosed = errors.New("ltx encoder closed")
	ErrDecoderClosed = errors.New("ltx decoder closed")
	ErrPageNotFound  = errors.New("page not in LTX file")
)

// FormatError describes one defect in an LTX file. It matches both its
// cause (one of the Err* sentinels) and ErrInvalidFile with errors.Is.
type FormatError struct {
	Err    error  // the specific cause, such as ErrPageOutOfOrder
	Detail string // what exactly was wrong, for people reading logs
}

// Error returns the cause followed by the detail.
func (e *FormatError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap exposes both the specific cause and ErrInvalidFile.
func (e *FormatError) Unwrap() []error {
	if e.Err == ErrInvalidFile {
		return []error{e.Err}
	}
	return []error{e.Err, ErrInvalidFile}
}

// invalidf returns a *FormatError for cause with a formatted detail.
func invalidf(cause error, format string, args ...any) error {
	return &FormatError{Err: cause, Detail: fmt.Sprintf(format, args...)}
}
