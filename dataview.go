package diaspora

// DataView is a non-owning view of an event's data as a list of segments,
// read and written as one logical byte sequence.
type DataView [][]byte

// Size returns the total number of bytes of all segments.
func (v DataView) Size() int {
	n := 0
	for _, s := range v {
		n += len(s)
	}
	return n
}

// Read copies bytes starting at the logical offset into dst and returns how
// many it copied (0 when offset is negative or past the end).
func (v DataView) Read(dst []byte, offset int) int {
	return v.each(offset, len(dst), func(seg []byte, done int) { copy(dst[done:], seg) })
}

// Write copies src into the view starting at the logical offset and returns
// how many bytes it copied (0 when offset is negative or past the end).
func (v DataView) Write(src []byte, offset int) int {
	return v.each(offset, len(src), func(seg []byte, done int) { copy(seg, src[done:]) })
}

// each calls f on the parts of the segments covering [offset, offset+n),
// with the number of bytes already handled, and returns the bytes covered.
func (v DataView) each(offset, n int, f func(seg []byte, done int)) int {
	if offset < 0 {
		return 0
	}
	done := 0
	for _, s := range v {
		if done == n {
			break
		}
		if offset >= len(s) {
			offset -= len(s)
			continue
		}
		part := s[offset:min(len(s), offset+n-done)]
		f(part, done)
		done += len(part)
		offset = 0
	}
	return done
}

// Bytes returns the data as one slice: the only segment itself (no copy), or a
// contiguous copy of several segments; nil for no segment.
func (v DataView) Bytes() []byte {
	switch len(v) {
	case 0:
		return nil
	case 1:
		return v[0]
	}
	b := make([]byte, 0, v.Size())
	for _, s := range v {
		b = append(b, s...)
	}
	return b
}

// DataAllocator gives the memory where a consumer puts the bytes its
// DataSelector selected: a view of exactly d.Size() bytes for the event of
// metadata md.
type DataAllocator func(md Metadata, d DataDescriptor) (DataView, error)

// BytesAllocator allocates one new []byte of d.Size() bytes per event.
var BytesAllocator DataAllocator = func(_ Metadata, d DataDescriptor) (DataView, error) {
	return DataView{make([]byte, d.Size())}, nil
}
