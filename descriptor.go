package diaspora

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Segment is a byte range: Size bytes from Offset.
type Segment struct{ Offset, Size int }

// DataDescriptor says where an event's data lives (a location string chosen by
// the driver and the size of the data there) and which of its bytes are
// selected. A DataSelector narrows it with SubView, StridedView and
// UnstructuredView; the offsets of a view are relative to the bytes selected
// by the descriptor it is made from, so views compose. The zero value selects
// no data. A DataDescriptor is immutable.
type DataDescriptor struct {
	location string
	baseSize int
	segs     []Segment // over the base: sorted, non-overlapping, non-adjacent, non-empty
	size     int       // sum of segs' sizes
}

// NewDataDescriptor describes all size bytes at location.
func NewDataDescriptor(location string, size int) DataDescriptor {
	d := DataDescriptor{location: location, baseSize: max(size, 0)}
	if size > 0 {
		d.segs = []Segment{{0, size}}
		d.size = size
	}
	return d
}

// BaseSize returns the size given to NewDataDescriptor: the size of the whole
// data the views select from. Drivers check it against the data they hold.
func (d DataDescriptor) BaseSize() int { return d.baseSize }

// Location returns the location given to NewDataDescriptor.
func (d DataDescriptor) Location() string { return d.location }

// Size returns the number of bytes selected.
func (d DataDescriptor) Size() int { return d.size }

// IsZero reports whether the descriptor selects no byte.
func (d DataDescriptor) IsZero() bool { return d.size == 0 }

// Flatten returns the selected byte ranges of the base data, in order; the
// ranges are merged, so none is empty, overlaps or touches another.
func (d DataDescriptor) Flatten() []Segment {
	return append([]Segment(nil), d.segs...)
}

// String describes the descriptor for logs and test failures.
func (d DataDescriptor) String() string {
	return fmt.Sprintf("DataDescriptor{%q, %d bytes, selected %v}", d.location, d.baseSize, d.segs)
}

// SubView selects size bytes from offset. An offset at or past the end gives
// the zero descriptor; a size running past the end is clipped. A negative
// offset or size is an error wrapping ErrInvalidArgument.
func (d DataDescriptor) SubView(offset, size int) (DataDescriptor, error) {
	if offset < 0 || size < 0 {
		return DataDescriptor{}, fmt.Errorf("diaspora: sub-view (offset %d, size %d): %w: negative value", offset, size, ErrInvalidArgument)
	}
	if offset >= d.size || size == 0 {
		return DataDescriptor{}, nil
	}
	return d.compose([]Segment{{offset, min(size, d.size-offset)}}), nil
}

// StridedView selects numBlocks blocks of blockSize bytes, the first at
// offset, each separated from the next by gapSize bytes. A view that would run
// past the end, or a negative value, is an error wrapping ErrInvalidArgument.
func (d DataDescriptor) StridedView(offset, numBlocks, blockSize, gapSize int) (DataDescriptor, error) {
	bad := func(why string) (DataDescriptor, error) {
		return DataDescriptor{}, fmt.Errorf("diaspora: strided view (offset %d, %d blocks of %d, gap %d) over %d bytes: %w: %s",
			offset, numBlocks, blockSize, gapSize, d.size, ErrInvalidArgument, why)
	}
	if offset < 0 || numBlocks < 0 || blockSize < 0 || gapSize < 0 {
		return bad("negative value")
	}
	if numBlocks == 0 || blockSize == 0 {
		if offset > d.size {
			return bad("offset past the end")
		}
		return DataDescriptor{}, nil
	}
	// offset + numBlocks*blockSize + (numBlocks-1)*gapSize <= d.size, without overflow.
	// The gap after the last block is not part of the view.
	if offset > d.size || blockSize > d.size-offset {
		return bad("runs past the end")
	}
	stride := blockSize + min(gapSize, d.size) // capped: a larger gap overruns anyway
	if numBlocks > 1 && (gapSize > d.size || numBlocks-1 > (d.size-offset-blockSize)/stride) {
		return bad("runs past the end")
	}
	ranges := make([]Segment, numBlocks)
	for i := range ranges {
		ranges[i] = Segment{offset + i*stride, blockSize}
	}
	return d.compose(ranges), nil
}

// UnstructuredView selects the given segments, which must be in increasing
// order, must not overlap and must lie within the view; otherwise it is an
// error wrapping ErrInvalidArgument. Adjacent segments merge; empty ones are
// ignored.
func (d DataDescriptor) UnstructuredView(segs ...Segment) (DataDescriptor, error) {
	end := 0
	ranges := make([]Segment, 0, len(segs))
	for i, s := range segs {
		bad := func(why string) (DataDescriptor, error) {
			return DataDescriptor{}, fmt.Errorf("diaspora: unstructured view over %d bytes: segment %d %+v: %w: %s",
				d.size, i, s, ErrInvalidArgument, why)
		}
		switch {
		case s.Offset < 0 || s.Size < 0:
			return bad("negative value")
		case s.Offset < end:
			return bad("overlaps or comes before the previous segment")
		case s.Offset > d.size || s.Size > d.size-s.Offset:
			return bad("runs past the end")
		case s.Size == 0:
			continue
		}
		ranges = append(ranges, s)
		end = s.Offset + s.Size
	}
	if len(ranges) == 0 {
		return DataDescriptor{}, nil
	}
	return d.compose(ranges), nil
}

// compose maps ranges, sorted, non-overlapping and within [0, d.size) of the
// logical bytes of d, to the base and returns the resulting descriptor.
func (d DataDescriptor) compose(ranges []Segment) DataDescriptor {
	out := DataDescriptor{location: d.location, baseSize: d.baseSize}
	i, start := 0, 0 // d.segs[i] holds logical bytes [start, start+d.segs[i].Size)
	for _, r := range ranges {
		for r.Size > 0 {
			for r.Offset >= start+d.segs[i].Size {
				start += d.segs[i].Size
				i++
			}
			p := d.segs[i]
			within := r.Offset - start
			n := min(r.Size, p.Size-within)
			out.add(Segment{p.Offset + within, n})
			r.Offset += n
			r.Size -= n
		}
	}
	return out
}

// add appends s, which starts at or after the end of the last segment,
// merging it with the last when they touch.
func (d *DataDescriptor) add(s Segment) {
	d.size += s.Size
	if n := len(d.segs); n > 0 && d.segs[n-1].Offset+d.segs[n-1].Size == s.Offset {
		d.segs[n-1].Size += s.Size
		return
	}
	d.segs = append(d.segs, s)
}

// DataSelector chooses which bytes of an event a consumer wants, from its
// metadata and the descriptor of all its data; the zero descriptor means none.
type DataSelector func(md Metadata, d DataDescriptor) (DataDescriptor, error)

// FullDataSelector selects all the data.
var FullDataSelector DataSelector = func(_ Metadata, d DataDescriptor) (DataDescriptor, error) {
	return d, nil
}

// descriptorVersion is the first byte of the binary form of a DataDescriptor.
//
// Version 1, all integers unsigned varints:
//
//	version(1 byte) len(location) location baseSize count
//	count × (gap, size)
//
// where gap is the distance from the end of the previous segment (from 0 for
// the first) to the segment's offset. Every gap but the first and every size
// is > 0, and the last segment ends within baseSize.
const descriptorVersion = 1

// MarshalBinary encodes the descriptor in the versioned binary form above.
func (d DataDescriptor) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 1+len(d.location)+3*binary.MaxVarintLen64+2*binary.MaxVarintLen64*len(d.segs))
	b = append(b, descriptorVersion)
	b = binary.AppendUvarint(b, uint64(len(d.location)))
	b = append(b, d.location...)
	b = binary.AppendUvarint(b, uint64(d.baseSize))
	b = binary.AppendUvarint(b, uint64(len(d.segs)))
	end := 0
	for _, s := range d.segs {
		b = binary.AppendUvarint(b, uint64(s.Offset-end))
		b = binary.AppendUvarint(b, uint64(s.Size))
		end = s.Offset + s.Size
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded. Everything is checked:
// a wrong version, a truncated, oversized or non-minimal field, or segments
// that are unordered, empty, touching or past the base size give an error
// wrapping ErrInvalidArgument, and d is left unchanged.
func (d *DataDescriptor) UnmarshalBinary(b []byte) error {
	r := descReader{b: b}
	if len(b) == 0 || b[0] != descriptorVersion {
		return r.fail("unknown version")
	}
	r.b = b[1:]
	locLen := r.int("location length", len(r.b)) // bytes checks it again
	loc := string(r.bytes(locLen))
	out := DataDescriptor{location: loc}
	out.baseSize = r.int("base size", math.MaxInt)
	count := r.int("segment count", len(r.b)/2) // each segment takes at least 2 bytes
	if r.err == nil && count > 0 {
		out.segs = make([]Segment, 0, count)
	}
	end := 0
	for i := 0; i < count && r.err == nil; i++ {
		gap := r.int("segment gap", out.baseSize-end)
		size := r.int("segment size", out.baseSize-end-gap)
		if r.err != nil {
			break
		}
		if size == 0 || (gap == 0 && i > 0) {
			return r.fail(fmt.Sprintf("segment %d is empty or touches the previous one", i))
		}
		out.segs = append(out.segs, Segment{end + gap, size})
		out.size += size
		end += gap + size
	}
	if r.err == nil && len(r.b) != 0 {
		return r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)))
	}
	if r.err != nil {
		return r.err
	}
	*d = out
	return nil
}

// descReader reads the fields of a binary DataDescriptor, keeping the first
// error.
type descReader struct {
	b   []byte
	err error
}

func (r *descReader) fail(why string) error {
	if r.err == nil {
		r.err = fmt.Errorf("diaspora: decoding a data descriptor: %w: %s", ErrInvalidArgument, why)
	}
	return r.err
}

// int reads an unsigned varint no greater than limit.
func (r *descReader) int(what string, limit int) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what + " is truncated or too long")
		return 0
	}
	if n > 1 && r.b[n-1] == 0 { // a trailing zero group: not the shortest form
		r.fail(what + " is not minimally encoded")
		return 0
	}
	if limit < 0 || v > uint64(limit) {
		r.fail(fmt.Sprintf("%s %d is larger than %d", what, v, max(limit, 0)))
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// bytes reads n bytes.
func (r *descReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(fmt.Sprintf("%d bytes wanted, %d left", n, len(r.b)))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}
