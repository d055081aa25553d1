package diaspora_test

import (
	"testing"

	"github.com/diaspora-shm/diaspora"
)

func TestDataViewReadsAcrossSegments(t *testing.T) {
	v := diaspora.DataView{[]byte("abc"), []byte(""), []byte("defg"), []byte("hi")}
	if v.Size() != 9 {
		t.Fatalf("Size: expected 9, got %d", v.Size())
	}
	dst := make([]byte, 5)
	if n := v.Read(dst, 2); n != 5 || string(dst) != "cdefg" {
		t.Fatalf("Read(5 bytes at 2): expected (5, cdefg), got (%d, %s)", n, dst)
	}
	if n := v.Read(dst, 7); n != 2 || string(dst[:n]) != "hi" {
		t.Fatalf("Read at 7: expected (2, hi), got (%d, %s)", n, dst[:n])
	}
	if n := v.Read(dst, 9); n != 0 {
		t.Fatalf("Read at the end: expected 0, got %d", n)
	}
	if n := v.Read(dst, -1); n != 0 {
		t.Fatalf("Read at -1: expected 0, got %d", n)
	}
}

func TestDataViewWritesAcrossSegments(t *testing.T) {
	a, b := make([]byte, 3), make([]byte, 3)
	v := diaspora.DataView{a, b}
	if n := v.Write([]byte("WXYZ"), 1); n != 4 || string(a) != "\x00WX" || string(b) != "YZ\x00" {
		t.Fatalf("Write(WXYZ at 1): expected 4 bytes over both segments, got %d, %q %q", n, a, b)
	}
	if n := v.Write([]byte("1234"), 4); n != 2 {
		t.Fatalf("Write past the end: expected 2 bytes copied, got %d", n)
	}
}

func TestDataViewBytes(t *testing.T) {
	seg := []byte("one")
	if got := (diaspora.DataView{seg}).Bytes(); &got[0] != &seg[0] {
		t.Fatalf("Bytes of one segment: expected the segment itself, got a copy")
	}
	if got := (diaspora.DataView{[]byte("ab"), []byte("cd")}).Bytes(); string(got) != "abcd" {
		t.Fatalf("Bytes of two segments: expected abcd, got %s", got)
	}
	if got := (diaspora.DataView{}).Bytes(); len(got) != 0 {
		t.Fatalf("Bytes of no segment: expected empty, got %q", got)
	}
}

func TestFullDataSelectorAndBytesAllocator(t *testing.T) {
	d := diaspora.NewDataDescriptor("x", 10)
	got, err := diaspora.FullDataSelector(diaspora.Metadata{}, d)
	if err != nil || got.Size() != 10 || got.Location() != "x" {
		t.Fatalf("FullDataSelector: expected the descriptor unchanged, got (%v, %v)", got, err)
	}
	v, err := diaspora.BytesAllocator(diaspora.Metadata{}, d)
	if err != nil || len(v) != 1 || len(v[0]) != 10 {
		t.Fatalf("BytesAllocator: expected one segment of 10 bytes, got (%v, %v)", v, err)
	}
}
