package ltx

import (
	"errors"
	"fmt"
)

// ErrInvalidFile matches every error caused by a malformed or corrupt LTX
// file, whatever the specific cause.
var ErrInvalidFile = errors.New("invalid LTX file")

// Specific causes of an invalid file. Each error returned for bad input
// matches one of these and ErrInvalidFile. (Apply's pre- and post-apply
// mismatches are about the database, not the file, and match only their
// own sentinel.)
var (
	// ErrInvalidMagic: the file does not start with "LTX1".
	ErrInvalidMagic = errors.New("bad magic: not an LTX file")
	// ErrInvalidHeaderFlags: the header sets flags this package does not know.
	ErrInvalidHeaderFlags = errors.New("unknown header flags")
	// ErrInvalidPageSize: the page size is not a power of two from 512 to 65536.
	ErrInvalidPageSize = errors.New("page size must be a power of two from 512 to 65536")
	// ErrInvalidHeader: a header field is inconsistent, such as a missing
	// pre-apply checksum or a WAL size without a WAL offset.
	ErrInvalidHeader = errors.New("invalid header field")
	// ErrInvalidTXID: a TXID is zero or the minimum is after the maximum.
	ErrInvalidTXID = errors.New("invalid transaction ID range")
	// ErrInvalidPageHeader: a page header has page number 0 or unknown flags.
	ErrInvalidPageHeader = errors.New("invalid page header")
	// ErrPageOutOfOrder: pages are not in strictly ascending order.
	ErrPageOutOfOrder = errors.New("page numbers out of order")
	// ErrPageOutOfBounds: a page number exceeds the commit size.
	ErrPageOutOfBounds = errors.New("page number beyond commit size")
	// ErrLockPage: the file holds the lock page, which SQLite never writes.
	ErrLockPage = errors.New("lock page must not be encoded")
	// ErrSnapshotIncomplete: a snapshot lacks some page from 1 to its commit size.
	ErrSnapshotIncomplete = errors.New("snapshot does not hold every page up to its commit size")
	// ErrCorruptPage: compressed page data does not decompress to one page.
	ErrCorruptPage = errors.New("corrupt page data")
	// ErrIndexMismatch: the page index is malformed or disagrees with the frames.
	ErrIndexMismatch = errors.New("page index does not match page frames")
	// ErrInvalidTrailer: a trailer checksum is missing or lacks ChecksumFlag.
	ErrInvalidTrailer = errors.New("invalid trailer")
	// ErrChecksumMismatch: the content does not match the file checksum.
	ErrChecksumMismatch = errors.New("file checksum mismatch")
	// ErrTrailingData: bytes follow the trailer.
	ErrTrailingData = errors.New("unexpected data after trailer")
	// ErrTruncated: the file ends early.
	ErrTruncated = errors.New("file is truncated")
	// ErrPostApplyMismatch: a database checksum after applying the file (or
	// the pages of a snapshot) differs from the trailer's post-apply checksum.
	ErrPostApplyMismatch = errors.New("post-apply checksum mismatch")
	// ErrPreApplyMismatch: the database checksum before applying the file
	// differs from the header's pre-apply checksum.
	ErrPreApplyMismatch = errors.New("pre-apply checksum mismatch")
	// ErrInvalidFilename: a name is not "%016x-%016x.ltx" with min <= max.
	ErrInvalidFilename = errors.New("invalid LTX filename")
	// ErrPageSizeMismatch: files (or a file and a checksum index) disagree
	// on the page size.
	ErrPageSizeMismatch = errors.New("page sizes differ")
	// ErrTXIDGap: a file in a run starts more than one TXID after the
	// previous one ends.
	ErrTXIDGap = errors.New("gap in transaction IDs")
	// ErrTXIDOverlap: a file in a run starts at or before the end of the
	// previous one.
	ErrTXIDOverlap = errors.New("overlapping transaction IDs")
	// ErrInvalidChecksumFile: a saved checksum index is damaged or was cut
	// short; rebuild it from the database.
	ErrInvalidChecksumFile = errors.New("invalid checksum index file")
)

// Errors about the use of an encoder or decoder rather than the file itself.
var (
	// ErrEncoderClosed is returned by an Encoder used after Close.
	ErrEncoderClosed = errors.New("ltx encoder closed")
	// ErrDecoderClosed is returned by a Decoder used after Close.
	ErrDecoderClosed = errors.New("ltx decoder closed")
	// ErrPageNotFound is returned by PageReader.ReadPage for a page the
	// file does not hold.
	ErrPageNotFound = errors.New("page not in LTX file")
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
