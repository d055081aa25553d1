package diaspora

import (
	"encoding/json"
	"strings"
	"testing"
)

var jsonSamples = []string{
	`{}`, `[]`, `{"x":1}`, ` {"a" : [1, 2.5e-3, -0, "s\u00e9\n", true, false, null]} `,
	`"plain"`, `-12.5E+7`, `0`, `01`, `1.`, `.5`, `-`, `1e`, `[1,]`, `{"a":1,}`, `{"a"}`, `{1:2}`,
	`"\x"`, `"\u12"`, `"\u12g4"`, "\"a\x01\"", `[`, `]`, `{"a":[}]}`, `tru`, `nulll`, `true false`,
	"\"\xff\xfe\"", `{"a":{"b":{"c":[[[]]]}}}`, ``, ` `, `"`, `"\`, `[1 2]`, `{"a":1 "b":2}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

func checkScan(t *testing.T, b []byte) {
	t.Helper()
	valid, compact := scanJSON(b)
	if want := json.Valid(b); valid != want {
		t.Fatalf("scanJSON(%q) valid = %v, json.Valid = %v", b, valid, want)
	}
	if valid && compact != isCompact(b) {
		t.Fatalf("scanJSON(%q) compact = %v, want %v", b, compact, isCompact(b))
	}
}

func TestScanJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSamples {
		checkScan(t, []byte(s))
	}
}

// FuzzScanJSON holds the fast scanner of metadata read from shared memory
// to encoding/json's own answer.
func FuzzScanJSON(f *testing.F) {
	for _, s := range jsonSamples {
		if len(s) < 200 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkScan(t, b) })
}

func BenchmarkScanJSON(b *testing.B) {
	md := []byte(`{"step":12345,"name":"frame","shape":[2048,2048],"dtype":"float32"}`)
	b.Run("scanJSON", func(b *testing.B) {
		b.SetBytes(int64(len(md)))
		for b.Loop() {
			scanJSON(md)
		}
	})
	b.Run("json.Valid+isCompact", func(b *testing.B) {
		b.SetBytes(int64(len(md)))
		for b.Loop() {
			_ = json.Valid(md) && isCompact(md)
		}
	})
}

// isCompact, the scanner's oracle for compactness, reports whether the valid JSON text b has no whitespace outside
// its strings.
func isCompact(b []byte) bool {
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
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}
