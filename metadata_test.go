package diaspora_test

import (
	"errors"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

func TestZeroMetadataDumpsEmptyObject(t *testing.T) {
	var md diaspora.Metadata
	if got := md.Dump(); got != "{}" {
		t.Fatalf("zero Metadata Dump: expected {}, got %s", got)
	}
	if !md.IsObject() {
		t.Fatalf("zero Metadata IsObject: expected true, got false")
	}
}

func TestNewMetadataKeepsCompactText(t *testing.T) {
	md, err := diaspora.NewMetadata(`{"x":1,"y":2.3}`)
	if err != nil {
		t.Fatalf("NewMetadata: unexpected error %v", err)
	}
	if got := md.Dump(); got != `{"x":1,"y":2.3}` {
		t.Fatalf("Dump: expected %s, got %s", `{"x":1,"y":2.3}`, got)
	}
	if !md.IsObject() {
		t.Fatalf("IsObject: expected true, got false")
	}
}

func TestNewMetadataCompactsWhitespace(t *testing.T) {
	md, err := diaspora.NewMetadata(" {\n\t\"a b\" : [1, 2] } ")
	if err != nil {
		t.Fatalf("NewMetadata: unexpected error %v", err)
	}
	if got, want := md.Dump(), `{"a b":[1,2]}`; got != want {
		t.Fatalf("Dump: expected %s, got %s", want, got)
	}
}

func TestNewMetadataRejectsInvalidJSON(t *testing.T) {
	for _, text := range []string{"", "{", `{"x":}`, "nope", `{"a":1}x`} {
		if _, err := diaspora.NewMetadata(text); !errors.Is(err, diaspora.ErrInvalidJSON) {
			t.Errorf("NewMetadata(%q): expected an error wrapping ErrInvalidJSON, got %v", text, err)
		}
	}
}

func TestMustMetadataPanicsOnInvalidJSON(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatalf("MustMetadata(\"{\"): expected a panic, got none")
		}
	}()
	diaspora.MustMetadata("{")
}

func TestStringMetadataIsAJSONString(t *testing.T) {
	md := diaspora.StringMetadata("abcd")
	if got := md.Dump(); got != `"abcd"` {
		t.Fatalf("Dump: expected %q, got %q", `"abcd"`, got)
	}
	s, err := md.AsString()
	if err != nil || s != "abcd" {
		t.Fatalf("AsString: expected (abcd, nil), got (%q, %v)", s, err)
	}
	if md.IsObject() {
		t.Fatalf("IsObject of a string: expected false, got true")
	}
}

func TestStringMetadataDoesNotParseItsText(t *testing.T) {
	md := diaspora.StringMetadata(`{"x":1}`)
	s, err := md.AsString()
	if err != nil || s != `{"x":1}` {
		t.Fatalf("AsString: expected the text back, got (%q, %v)", s, err)
	}
}

func TestAsStringOfAnObjectFails(t *testing.T) {
	md := diaspora.MustMetadata(`{"x":1}`)
	if s, err := md.AsString(); err == nil {
		t.Fatalf("AsString of an object: expected an error, got %q", s)
	}
}

func TestMetadataOfAndDecodeRoundTrip(t *testing.T) {
	type point struct {
		Name string  `json:"name"`
		X    int     `json:"x"`
		Y    float64 `json:"y"`
	}
	md, err := diaspora.MetadataOf(map[string]any{"name": "p", "x": 3, "y": 4.5})
	if err != nil {
		t.Fatalf("MetadataOf: unexpected error %v", err)
	}
	var got point
	if err := md.Decode(&got); err != nil {
		t.Fatalf("Decode: unexpected error %v", err)
	}
	if want := (point{"p", 3, 4.5}); got != want {
		t.Fatalf("Decode: expected %+v, got %+v", want, got)
	}
	back, err := diaspora.MetadataOf(got)
	if err != nil || back.Dump() != md.Dump() {
		t.Fatalf("MetadataOf(decoded): expected %s, got (%s, %v)", md.Dump(), back.Dump(), err)
	}
}

func TestMetadataOfAnUnencodableValueFails(t *testing.T) {
	if _, err := diaspora.MetadataOf(make(chan int)); !errors.Is(err, diaspora.ErrInvalidArgument) {
		t.Fatalf("MetadataOf(chan): expected ErrInvalidArgument, got %v", err)
	}
}

func TestMetadataNestsInJSON(t *testing.T) {
	inner := diaspora.MustMetadata(`{"a":[1,2]}`)
	md, err := diaspora.MetadataOf(map[string]any{"inner": inner})
	if err != nil || md.Dump() != `{"inner":{"a":[1,2]}}` {
		t.Fatalf("MetadataOf with a nested Metadata: expected %s, got (%s, %v)", `{"inner":{"a":[1,2]}}`, md.Dump(), err)
	}
	var back struct{ Inner diaspora.Metadata }
	if err := md.Decode(&back); err != nil || back.Inner.Dump() != inner.Dump() {
		t.Fatalf("Decode into a Metadata field: expected %s, got (%s, %v)", inner.Dump(), back.Inner.Dump(), err)
	}
}

func TestMetadataFromBytesKeepsCompactBytesWithoutCopy(t *testing.T) {
	b := []byte(`{"k":"a b"}`)
	md, err := diaspora.MetadataFromBytes(b)
	if err != nil {
		t.Fatalf("MetadataFromBytes: unexpected error %v", err)
	}
	if got := md.Bytes(); &got[0] != &b[0] {
		t.Fatalf("MetadataFromBytes of compact JSON: expected the same bytes, got a copy")
	}
	if _, err := diaspora.MetadataFromBytes([]byte(`{"k":`)); !errors.Is(err, diaspora.ErrInvalidJSON) {
		t.Fatalf("MetadataFromBytes of bad JSON: expected ErrInvalidJSON, got %v", err)
	}
	md, err = diaspora.MetadataFromBytes([]byte("[1, 2]"))
	if err != nil || md.Dump() != "[1,2]" {
		t.Fatalf("MetadataFromBytes with whitespace: expected [1,2], got (%s, %v)", md.Dump(), err)
	}
}
