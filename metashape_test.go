package diaspora

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestMetadataOfShape(t *testing.T) {
	for _, s := range []string{`{}`, `{"x":1}`, `[1,2]`, `"a"`, `12`, `-3.5e7`, `true`, `false`, `null`, `{"a":"\u0001"}`} {
		md, err := MetadataOfShape([]byte(s))
		if err != nil || md.Dump() != s {
			t.Errorf("MetadataOfShape(%s) = %v, %v", s, md, err)
		}
	}
	for _, s := range []string{``, `{`, `{"x":1]`, `"`, `x`, "{\n}", "{\"a\":\"\x01\"}", "1 ", `tru`, `[}`} {
		if _, err := MetadataOfShape([]byte(s)); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("MetadataOfShape(%q): %v, want ErrInvalidJSON", s, err)
		}
	}
	// The shape passes; the full parse at decoding says what is wrong.
	md, err := MetadataOfShape([]byte(`{"x":}`))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := md.Decode(&v); err == nil {
		t.Fatal("Decode of {\"x\":} succeeded")
	}
}

func TestControlByteFindsEveryOffset(t *testing.T) {
	for n := 0; n < 40; n++ {
		for at := -1; at < n; at++ {
			b := bytes.Repeat([]byte{'a'}, n)
			if at >= 0 {
				b[at] = 0x1f
			}
			if got := controlByte(b); got != at {
				t.Fatalf("controlByte of %d bytes with 0x1f at %d: %d", n, at, got)
			}
		}
	}
	if controlByte([]byte{0x80, 0xff, 0x20, 0x7f, 0x9f, 0xa0, 0xc3, 0xa9}) != -1 {
		t.Fatal("bytes >= 0x20 taken for control bytes")
	}
}

// FuzzMetadataOfShape: every compact JSON text passes the shape check, and
// whatever passes never makes a Metadata method panic.
func FuzzMetadataOfShape(f *testing.F) {
	for _, s := range jsonSamples {
		if len(s) < 200 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := MetadataOfShape(bytes.Clone(b))
		if valid, compact := scanJSON(b); valid && compact && err != nil {
			t.Fatalf("compact JSON %q refused: %v", b, err)
		}
		if err != nil {
			return
		}
		var v any
		decodeErr := md.Decode(&v)
		if json.Valid(b) != (decodeErr == nil) {
			t.Fatalf("Decode of %q: %v, json.Valid %v", b, decodeErr, json.Valid(b))
		}
		_ = md.IsObject()
		_, _ = md.AsString()
		_, _ = md.field("x")
		_ = md.Dump()
		_, _ = json.Marshal(map[string]Metadata{"m": md})
	})
}

func BenchmarkMetadataOfShape(b *testing.B) {
	md := []byte(`{"step":12345,"name":"frame","shape":[2048,2048],"dtype":"float32"}`)
	b.SetBytes(int64(len(md)))
	for b.Loop() {
		MetadataOfShape(md)
	}
}
