package segment

import (
	"errors"
	"fmt"
	"math"
)

var (
	// ErrLocked is returned by TryLock when another holder has the lock.
	ErrLocked = errors.New("segment: log is locked by another writer")
	// ErrClosed is returned by operations on a closed Writer or Reader.
	ErrClosed = errors.New("segment: closed")
	// ErrOutOfOrder is returned by Append when event IDs do not strictly
	// increase past the last appended ID.
	ErrOutOfOrder = errors.New("segment: event IDs out of order")
	// ErrNotFound is returned when a directory, log or position does not exist.
	ErrNotFound = errors.New("segment: not found")
)

// unknownID marks an event ID bound that could not be established.
const unknownID = math.MaxUint64

// CorruptionError reports damaged bytes in a segment file: the directory, the
// file (base name), the byte offset of the damaged wal entry and the range of
// event IDs that may be affected. FirstID/LastID are bounds derived from the
// neighbouring valid frames; LastID is math.MaxUint64 when nothing valid
// follows.
type CorruptionError struct {
	Dir     string
	File    string
	Offset  int64
	FirstID uint64
	LastID  uint64
	Err     error
}

func (e *CorruptionError) Error() string {
	last := "?"
	if e.LastID != unknownID {
		last = fmt.Sprint(e.LastID)
	}
	return fmt.Sprintf("segment: corrupt log %s: file %s offset %d events %d..%s: %v",
		e.Dir, e.File, e.Offset, e.FirstID, last, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// Reasons carried in CorruptionError.Err.
var (
	errBadCRC       = errors.New("frame checksum mismatch")
	errBadMagic     = errors.New("bad frame magic or version")
	errBadFrame     = errors.New("malformed frame")
	errBadEntry     = errors.New("malformed wal entry length")
	errTruncEntry   = errors.New("truncated wal entry in a sealed segment")
	errFrameTooBig  = errors.New("frame too large")
	errEmptyFrame   = errors.New("frame has no events")
	errNonCanonical = errors.New("non-canonical varint in frame index")
)
