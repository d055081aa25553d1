package diaspora

import (
	"encoding/binary"
	"fmt"

	"github.com/diaspora-shm/diaspora/internal/metabytes"
)

// The driver keeps checked metadata as bytes in events without pointers,
// and wraps them again when asked.
func init() { metabytes.Of = func(b []byte) Metadata { return Metadata{b: b} } }

// MetadataOfShape wraps b, metadata a consumer reads from shared memory as
// a serializer wrote it, after a check of its shape only: b is not empty,
// is one line (no byte below 0x20), and opens and closes like a JSON value
// ({...}, [...], "...", or a number or literal). It costs a few
// nanoseconds where a full parse costs tens per event; the full parse
// happens when the metadata is decoded (Decode, AsString, a topic's
// validator or selector reading a field), which reports invalid JSON as an
// error then. Every compact JSON text passes, so metadata written by the
// default serializer is delivered as it was pushed; bytes of a faulty or
// hostile producer are never trusted as JSON before they are parsed, and
// cannot make a Metadata method panic. The caller gives up b.
func MetadataOfShape(b []byte) (Metadata, error) {
	if err := checkShape(b); err != nil {
		return Metadata{}, err
	}
	return Metadata{b: b}, nil
}

// checkShape is MetadataOfShape's check.
func checkShape(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("diaspora: metadata of 0 bytes: %w: not a JSON value", ErrInvalidJSON)
	}
	first, last := b[0], b[len(b)-1]
	ok := false
	switch first {
	case '{':
		ok = last == '}'
	case '[':
		ok = last == ']'
	case '"':
		ok = last == '"' && len(b) >= 2
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		ok = last >= '0' && last <= '9'
	case 't', 'f':
		ok = last == 'e'
	case 'n':
		ok = last == 'l'
	}
	if !ok {
		return fmt.Errorf("diaspora: metadata %q...%q of %d bytes: %w: does not open and close like a JSON value", first, last, len(b), ErrInvalidJSON)
	}
	if i := controlByte(b); i >= 0 {
		return fmt.Errorf("diaspora: metadata of %d bytes: %w: control byte 0x%02x at offset %d", len(b), ErrInvalidJSON, b[i], i)
	}
	return nil
}

// controlByte returns the offset of the first byte below 0x20 in b, or -1:
// eight bytes at a time (a byte below 0x20 borrows in x-0x20 and has its top
// bit clear).
func controlByte(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if (x-0x20*ones)&^x&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] < 0x20 {
			return i
		}
	}
	return -1
}
