package ring

import (
	"errors"
	"fmt"
)

// Errors returned by this package; test with errors.Is.
var (
	ErrFull        = errors.New("ring: full")
	ErrTimeout     = errors.New("ring: timed out")
	ErrCorrupt     = errors.New("ring: corrupt")
	ErrAbandoned   = errors.New("ring: claim abandoned by a reader")
	ErrClosed      = errors.New("ring: closed")
	ErrEndOfStream = errors.New("ring: end of stream")
	ErrTooLarge    = errors.New("ring: record too large")
	ErrNoSlot      = errors.New("ring: no free reader slot")
	ErrTooOld      = errors.New("ring: position or ID no longer in the ring")
	ErrComplete    = errors.New("ring: marked as complete")
	ErrDeleted     = errors.New("ring: its topic was deleted")
	ErrNameInUse   = errors.New("ring: name in use by another reader")

	errArch = errors.New("ring: unsupported architecture (needs amd64 CMPXCHG16B)")
)

// CorruptError says where a ring holds a value that fails validation. It
// wraps ErrCorrupt.
type CorruptError struct {
	Path  string // ring file
	Pos   uint64 // absolute position of the record, or header offset
	Field string // which field
	Value uint64 // what was found
	Why   string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ring: corrupt %s: at position %d: %s = %d: %s", e.Path, e.Pos, e.Field, e.Value, e.Why)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
