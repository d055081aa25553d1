package diaspora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Metadata is a JSON value attached to an event, a topic or a plug-in.
//
// It is kept as compact JSON text and parsed only when asked (Decode, IsObject,
// AsString), so that pushing an event never parses or re-encodes its metadata
// on the default path. The zero value is the empty object {}. A Metadata is
// immutable and safe to share between goroutines.
//
// What is checked when: NewMetadata, MetadataFromBytes and UnmarshalJSON
// parse the whole text. The metadata of an event a consumer receives (with
// the default serializer) is checked at delivery for its bounds and shape
// only (MetadataOfShape: one line, the delimiters of a JSON value), which
// any compact JSON passes, and is parsed in full when it is decoded: a
// producer that wrote something that is not JSON makes Decode (or
// AsString, or a validator reading a field) fail with an error, not the
// delivery. A custom serializer's Deserialize checks what it reads itself.
type Metadata struct {
	b []byte // compact JSON text; nil means {}
}

var emptyObject = []byte("{}")

// NewMetadata validates text as JSON and keeps its compact form. Invalid JSON,
// including arrays and objects nested deeper than MaxJSONDepth, gives an
// error wrapping ErrInvalidJSON that says what is wrong.
func NewMetadata(text string) (Metadata, error) {
	return compactMetadata([]byte(text))
}

// MustMetadata is like NewMetadata but panics on invalid JSON. It is meant for
// constants in programs and tests.
func MustMetadata(text string) Metadata {
	md, err := NewMetadata(text)
	if err != nil {
		panic(err)
	}
	return md
}

// MetadataFromBytes validates b as JSON. When b is already compact it is kept
// as is, without a copy: the caller hands ownership of b to the Metadata and
// must not modify it afterwards. Invalid JSON gives an error wrapping
// ErrInvalidJSON.
func MetadataFromBytes(b []byte) (Metadata, error) {
	return compactMetadata(b)
}

// compactMetadata validates b and returns its compact form, which is b itself
// when b holds no whitespace; the caller gives up b.
func compactMetadata(b []byte) (Metadata, error) {
	valid, compact := scanJSON(b)
	if !valid {
		return Metadata{}, invalidJSON(b)
	}
	if compact {
		return Metadata{b: b}, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(b))
	if err := json.Compact(&buf, b); err != nil {
		return Metadata{}, fmt.Errorf("diaspora: metadata %s: %w: %v", quoteShort(b), ErrInvalidJSON, err)
	}
	return Metadata{b: buf.Bytes()}, nil
}

// MaxJSONDepth is how deep arrays and objects may nest in Metadata: the
// limit of encoding/json. Deeper JSON is refused with ErrInvalidJSON.
const MaxJSONDepth = 10000

// invalidJSON says why json.Valid refused b: the nesting depth and its limit
// when that is the reason, else encoding/json's syntax error.
func invalidJSON(b []byte) error {
	err := json.Compact(new(bytes.Buffer), b)
	if err == nil { // cannot happen: json.Valid and json.Compact agree
		return fmt.Errorf("diaspora: metadata %s: %w", quoteShort(b), ErrInvalidJSON)
	}
	if strings.Contains(err.Error(), "exceeded max depth") {
		return fmt.Errorf("diaspora: metadata %s: %w: arrays and objects nest %d deep, the limit is %d",
			quoteShort(b), ErrInvalidJSON, jsonDepth(b), MaxJSONDepth)
	}
	return fmt.Errorf("diaspora: metadata %s: %w: %v", quoteShort(b), ErrInvalidJSON, err)
}

// jsonDepth is the deepest nesting of arrays and objects in b, outside strings.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// StringMetadata returns the JSON string value s. It does not parse s: any
// text, JSON or not, becomes a string.
func StringMetadata(s string) Metadata {
	b, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		panic(err)
	}
	return Metadata{b: b}
}

// MetadataOf returns the JSON encoding of v, as json.Marshal gives it.
func MetadataOf(v any) (Metadata, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Metadata{}, fmt.Errorf("diaspora: metadata of a %T: %w: %v", v, ErrInvalidArgument, err)
	}
	return Metadata{b: b}, nil
}

// Dump returns the compact JSON text; "{}" for the zero value.
func (m Metadata) Dump() string { return string(m.Bytes()) }

// String returns the compact JSON text, like Dump.
func (m Metadata) String() string { return m.Dump() }

// Bytes returns the compact JSON text without a copy. The caller must not
// modify it.
func (m Metadata) Bytes() []byte {
	if m.b == nil {
		return emptyObject
	}
	return m.b
}

// Decode parses the JSON value into v, as json.Unmarshal does.
func (m Metadata) Decode(v any) error {
	if err := json.Unmarshal(m.Bytes(), v); err != nil {
		return fmt.Errorf("diaspora: decoding metadata %s into a %T: %w", quoteShort(m.Bytes()), v, err)
	}
	return nil
}

// IsObject reports whether the value is a JSON object.
func (m Metadata) IsObject() bool { return m.Bytes()[0] == '{' }

// AsString returns the string of a JSON string value; any other value is an
// error wrapping ErrInvalidMetadata.
func (m Metadata) AsString() (string, error) {
	b := m.Bytes()
	if b[0] != '"' {
		return "", fmt.Errorf("diaspora: metadata %s is not a JSON string: %w", quoteShort(b), ErrInvalidMetadata)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("diaspora: metadata %s: %w: %v", quoteShort(b), ErrInvalidJSON, err)
	}
	return s, nil
}

// MarshalJSON returns the JSON text, so a Metadata can sit inside values given
// to json.Marshal or MetadataOf.
func (m Metadata) MarshalJSON() ([]byte, error) { return m.Bytes(), nil }

// UnmarshalJSON keeps a compact copy of data.
func (m *Metadata) UnmarshalJSON(data []byte) error {
	md, err := compactMetadata(bytes.Clone(data))
	if err != nil {
		return err
	}
	*m = md
	return nil
}

func (Metadata) isArg()      {}
func (Metadata) isTopicArg() {}

// field returns the raw JSON of the named field of an object, or nil when m
// is not an object or lacks the field.
func (m Metadata) field(name string) (json.RawMessage, error) {
	if !m.IsObject() {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m.Bytes(), &obj); err != nil {
		return nil, fmt.Errorf("diaspora: metadata %s: %w: %v", quoteShort(m.Bytes()), ErrInvalidJSON, err)
	}
	return obj[name], nil
}

// quoteShort shows at most 64 bytes of b in an error message: as is when b is
// compact JSON, else quoted.
func quoteShort(b []byte) string {
	const max = 64
	more := ""
	if len(b) > max {
		more = "..."
	}
	if _, compact := scanJSON(b); compact {
		return string(b[:min(len(b), max)]) + more
	}
	return fmt.Sprintf("%q", b[:min(len(b), max)]) + more
}

// PartitionInfo describes one partition of a topic; its Metadata is chosen by
// the driver.
type PartitionInfo struct{ Metadata }
