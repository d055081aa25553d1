package diaspora_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

// alphabet is the 52 bytes a..zA..Z.
var alphabet = []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

// selected returns the bytes of base that d selects.
func selected(base []byte, d diaspora.DataDescriptor) string {
	var out []byte
	for _, s := range d.Flatten() {
		out = append(out, base[s.Offset:s.Offset+s.Size]...)
	}
	return string(out)
}

// mustView returns a function that fails t on a view's error, for use as
// mustView(t)(d.SubView(...)).
func mustView(t *testing.T) func(diaspora.DataDescriptor, error) diaspora.DataDescriptor {
	return func(d diaspora.DataDescriptor, err error) diaspora.DataDescriptor {
		t.Helper()
		if err != nil {
			t.Fatalf("making a view: unexpected error %v", err)
		}
		return d
	}
}

func TestSubViewSelectsAContiguousRange(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	v := mustView(t)(d.SubView(13, 26))
	if got, want := selected(alphabet, v), "nopqrstuvwxyzABCDEFGHIJKLM"; got != want {
		t.Fatalf("SubView(13,26): expected %s, got %s", want, got)
	}
	if v.Size() != 26 || v.Location() != "mem" {
		t.Fatalf("SubView(13,26): expected size 26 at mem, got %d at %q", v.Size(), v.Location())
	}
}

func TestSubViewClipsAndPastTheEndIsZero(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	v := mustView(t)(d.SubView(50, 10))
	if got := selected(alphabet, v); got != "YZ" {
		t.Fatalf("SubView(50,10): expected YZ (clipped), got %s", got)
	}
	for _, off := range []int{52, 60} {
		v := mustView(t)(d.SubView(off, 4))
		if !v.IsZero() || v.Size() != 0 || !reflect.DeepEqual(v, diaspora.DataDescriptor{}) {
			t.Fatalf("SubView(%d,4) past the end: expected the zero descriptor, got %v", off, v)
		}
	}
	if _, err := d.SubView(-1, 4); !errors.Is(err, diaspora.ErrInvalidArgument) {
		t.Fatalf("SubView(-1,4): expected ErrInvalidArgument, got %v", err)
	}
}

func TestStridedViewSelectsBlocks(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	v := mustView(t)(d.StridedView(13, 3, 4, 2))
	if got, want := selected(alphabet, v), "nopqtuvwzABC"; got != want {
		t.Fatalf("StridedView(13,3,4,2): expected %s, got %s", want, got)
	}
	// Exactly to the end is allowed.
	v = mustView(t)(d.StridedView(42, 2, 4, 2))
	if got, want := selected(alphabet, v), "QRSTWXYZ"; got != want {
		t.Fatalf("StridedView(42,2,4,2): expected %s, got %s", want, got)
	}
}

func TestStridedViewPastTheEndIsAnError(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	for _, c := range [][4]int{{43, 2, 4, 2}, {0, 1, 53, 0}, {53, 1, 1, 0}, {0, 1 << 62, 1 << 20, 1 << 20}, {-1, 1, 1, 1}, {0, 2, 1, -1}} {
		if v, err := d.StridedView(c[0], c[1], c[2], c[3]); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("StridedView%v: expected ErrInvalidArgument, got %v (%v)", c, err, v)
		}
	}
}

func TestUnstructuredViewSelectsSegments(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	v := mustView(t)(d.UnstructuredView(diaspora.Segment{3, 6}, diaspora.Segment{15, 4}, diaspora.Segment{27, 8}))
	if got, want := selected(alphabet, v), "defghipqrsBCDEFGHI"; got != want {
		t.Fatalf("UnstructuredView: expected %s, got %s", want, got)
	}
}

func TestUnstructuredViewMergesAdjacentSegments(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	v := mustView(t)(d.UnstructuredView(diaspora.Segment{3, 2}, diaspora.Segment{5, 3}, diaspora.Segment{10, 0}))
	if got, want := v.Flatten(), []diaspora.Segment{{3, 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Flatten of adjacent segments: expected %v, got %v", want, got)
	}
}

func TestUnstructuredViewRejectsOverlapDisorderAndOverrun(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	cases := map[string][]diaspora.Segment{
		"overlapping":  {{3, 6}, {8, 2}},
		"out of order": {{15, 4}, {3, 6}},
		"past the end": {{50, 3}},
		"negative":     {{-1, 3}},
	}
	for name, segs := range cases {
		if v, err := d.UnstructuredView(segs...); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("UnstructuredView %s %v: expected ErrInvalidArgument, got %v (%v)", name, segs, err, v)
		}
	}
}

func TestViewsComposeToSelectImageRectangles(t *testing.T) {
	const W, H = 13, 11
	img := make([]byte, W*H)
	for i := range img {
		img[i] = byte(i)
	}
	d := diaspora.NewDataDescriptor("image", W*H)
	for _, r := range []struct{ x, y, w, h int }{
		{0, 0, W, H}, {0, 0, 1, 1}, {2, 3, 4, 5}, {12, 10, 1, 1}, {5, 0, 8, 11}, {0, 7, 13, 2}, {3, 4, 1, 6},
	} {
		t.Run(fmt.Sprintf("%dx%d_at_%d,%d", r.w, r.h, r.x, r.y), func(t *testing.T) {
			rows := mustView(t)(d.SubView(r.y*W+r.x, W*r.h))
			rect := mustView(t)(rows.StridedView(0, r.h, r.w, W-r.w))
			var want []byte
			for y := r.y; y < r.y+r.h; y++ {
				want = append(want, img[y*W+r.x:y*W+r.x+r.w]...)
			}
			if got := selected(img, rect); got != string(want) {
				t.Fatalf("rectangle: expected %v, got %v", want, []byte(got))
			}
			if rect.Size() != r.w*r.h {
				t.Fatalf("rectangle size: expected %d, got %d", r.w*r.h, rect.Size())
			}
		})
	}
}

func TestViewOffsetsAreRelativeToTheParentView(t *testing.T) {
	d := diaspora.NewDataDescriptor("mem", len(alphabet))
	parent := mustView(t)(d.UnstructuredView(diaspora.Segment{0, 3}, diaspora.Segment{10, 3}, diaspora.Segment{20, 3}))
	// parent's logical bytes: abc klm uvw
	child := mustView(t)(parent.SubView(2, 5))
	if got, want := selected(alphabet, child), "cklmu"; got != want {
		t.Fatalf("SubView of an unstructured view: expected %s, got %s", want, got)
	}
	if got, want := child.Flatten(), []diaspora.Segment{{2, 1}, {10, 3}, {20, 1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Flatten: expected %v, got %v", want, got)
	}
	grand := mustView(t)(child.StridedView(0, 3, 1, 1))
	if got, want := selected(alphabet, grand), "clu"; got != want {
		t.Fatalf("StridedView of it: expected %s, got %s", want, got)
	}
}

func TestZeroDescriptorSelectsNothing(t *testing.T) {
	var d diaspora.DataDescriptor
	if !d.IsZero() || d.Size() != 0 || len(d.Flatten()) != 0 {
		t.Fatalf("zero descriptor: expected no data, got %v", d)
	}
	v := mustView(t)(d.SubView(0, 10))
	if !v.IsZero() {
		t.Fatalf("SubView of the zero descriptor: expected zero, got %v", v)
	}
}

func TestDataDescriptorBinaryRoundTrip(t *testing.T) {
	d := diaspora.NewDataDescriptor("some/location", len(alphabet))
	cases := []diaspora.DataDescriptor{
		{},
		d,
		mustView(t)(d.StridedView(13, 3, 4, 2)),
		mustView(t)(d.UnstructuredView(diaspora.Segment{0, 1}, diaspora.Segment{27, 8})),
		diaspora.NewDataDescriptor("", 1<<40),
	}
	for _, want := range cases {
		b, err := want.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%v): unexpected error %v", want, err)
		}
		var got diaspora.DataDescriptor
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(MarshalBinary(%v)): unexpected error %v", want, err)
		}
		if got.Location() != want.Location() || got.Size() != want.Size() || !reflect.DeepEqual(got.Flatten(), want.Flatten()) {
			t.Fatalf("round trip: expected %v, got %v", want, got)
		}
	}
}

func TestUnmarshalBinaryRejectsDamagedInput(t *testing.T) {
	good, _ := mustView(t)(diaspora.NewDataDescriptor("loc", 52).StridedView(1, 3, 4, 2)).MarshalBinary()
	cases := map[string][]byte{
		"empty":          {},
		"bad version":    append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte{}, good...), 0),
		// version 1, no location, base size 10, 1 segment of gap 5, size 6: past the base.
		"past the base": {1, 0, 10, 1, 5, 6},
		// two segments, the second touching the first.
		"touching":  {1, 0, 10, 2, 0, 2, 0, 2},
		"empty seg": {1, 0, 10, 1, 0, 0},
		// a huge segment count with few bytes.
		"huge count": {1, 0, 10, 0xff, 0xff, 0xff, 0xff, 0x0f},
		// a location length past the input.
		"huge location": {1, 0x80, 0x01, 'a'},
	}
	for name, b := range cases {
		d := diaspora.NewDataDescriptor("unchanged", 7)
		if err := d.UnmarshalBinary(b); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("UnmarshalBinary %s %v: expected ErrInvalidArgument, got %v", name, b, err)
		}
		if d.Location() != "unchanged" || d.Size() != 7 {
			t.Errorf("UnmarshalBinary %s: expected the descriptor unchanged on error, got %v", name, d)
		}
	}
}

func FuzzDataDescriptorUnmarshal(f *testing.F) {
	d := diaspora.NewDataDescriptor("loc", 52)
	for _, v := range []diaspora.DataDescriptor{{}, d} {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	if v, err := d.StridedView(13, 3, 4, 2); err == nil {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 0, 10, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d diaspora.DataDescriptor
		if err := d.UnmarshalBinary(b); err != nil {
			return
		}
		// A decoded descriptor is well formed: it re-encodes to the same bytes
		// and its segments stay sorted, disjoint and non-empty.
		again, err := d.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding %v: expected %x, got %x (%v)", d, b, again, err)
		}
		end, total := -1, 0
		for _, s := range d.Flatten() {
			if s.Size <= 0 || s.Offset <= end {
				t.Fatalf("decoded segments not sorted and disjoint: %v", d.Flatten())
			}
			end = s.Offset + s.Size
			total += s.Size
		}
		if total != d.Size() {
			t.Fatalf("Size: expected %d, got %d", total, d.Size())
		}
		if _, err := d.SubView(0, d.Size()); err != nil {
			t.Fatalf("SubView of a decoded descriptor: unexpected error %v", err)
		}
	})
}

func TestDataDescriptorBaseSizeSurvivesViews(t *testing.T) {
	d := diaspora.NewDataDescriptor("x", 52)
	v, err := d.SubView(13, 26)
	if err != nil {
		t.Fatal(err)
	}
	s, err := v.StridedView(0, 3, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []diaspora.DataDescriptor{d, v, s} {
		if c.BaseSize() != 52 {
			t.Fatalf("%v: BaseSize %d, want 52", c, c.BaseSize())
		}
	}
}
