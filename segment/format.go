package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Frame layout (little endian); see FORMAT.md for the byte diagram.
const (
	frameMagic0  = 'D'
	frameMagic1  = 'S'
	frameMagic2  = 'F'
	frameVersion = 1

	offMagic    = 0  // 3 bytes "DSF"
	offVersion  = 3  // 1 byte
	offCount    = 4  // uint32 number of events
	offFirstID  = 8  // uint64 ID of the first event
	offLastID   = 16 // uint64 ID of the last event
	offTime     = 24 // int64 append time, Unix nanoseconds
	offIndexLen = 32 // uint32 length of the index in bytes
	frameHdrLen = 36 // index starts here
	frameCRCLen = 4  // CRC32C of every preceding byte of the frame

	minIndexEntry = 3 // three one-byte uvarints
	minFrameLen   = frameHdrLen + minIndexEntry + frameCRCLen
	// maxFrameLen bounds a frame (and therefore a wal entry) so a damaged
	// length can never make a reader allocate more.
	maxFrameLen = 1 << 30
	// maxUvarintLen is the longest uvarint of a uint64.
	maxUvarintLen = binary.MaxVarintLen64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameHeader holds the fixed fields of a decoded frame.
type frameHeader struct {
	count    uint32
	firstID  uint64
	lastID   uint64
	time     int64
	indexLen uint32
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// frameSize returns the encoded size of a frame holding evs.
func frameSize(evs []Event) (int, error) {
	idx, pay := 0, 0
	prev := evs[0].ID
	for i := range evs {
		e := &evs[i]
		idx += uvarintLen(e.ID-prev) + uvarintLen(uint64(len(e.Meta))) + uvarintLen(uint64(len(e.Data)))
		pay += len(e.Meta) + len(e.Data)
		prev = e.ID
		if idx+pay > maxFrameLen {
			return 0, fmt.Errorf("segment: batch of %d events exceeds the %d-byte frame limit", len(evs), maxFrameLen)
		}
	}
	if len(evs) > math.MaxUint32 {
		return 0, fmt.Errorf("segment: batch of %d events is too large", len(evs))
	}
	n := frameHdrLen + idx + pay + frameCRCLen
	if n > maxFrameLen {
		return 0, fmt.Errorf("segment: batch of %d events exceeds the %d-byte frame limit", len(evs), maxFrameLen)
	}
	return n, nil
}

// appendFrame encodes evs (non-empty, IDs strictly increasing, checked by the
// caller) as one frame appended to dst.
func appendFrame(dst []byte, evs []Event, now int64) ([]byte, error) {
	size, err := frameSize(evs)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	if cap(dst)-start < size {
		nd := make([]byte, start, start+size)
		copy(nd, dst)
		dst = nd
	}
	f := dst[start : start+size]
	f[offMagic], f[offMagic+1], f[offMagic+2] = frameMagic0, frameMagic1, frameMagic2
	f[offVersion] = frameVersion
	binary.LittleEndian.PutUint32(f[offCount:], uint32(len(evs)))
	binary.LittleEndian.PutUint64(f[offFirstID:], evs[0].ID)
	binary.LittleEndian.PutUint64(f[offLastID:], evs[len(evs)-1].ID)
	binary.LittleEndian.PutUint64(f[offTime:], uint64(now))
	p := frameHdrLen
	prev := evs[0].ID
	for i := range evs {
		e := &evs[i]
		p += binary.PutUvarint(f[p:], e.ID-prev)
		p += binary.PutUvarint(f[p:], uint64(len(e.Meta)))
		p += binary.PutUvarint(f[p:], uint64(len(e.Data)))
		prev = e.ID
	}
	binary.LittleEndian.PutUint32(f[offIndexLen:], uint32(p-frameHdrLen))
	for i := range evs {
		p += copy(f[p:], evs[i].Meta)
		p += copy(f[p:], evs[i].Data)
	}
	binary.LittleEndian.PutUint32(f[p:], crc32.Checksum(f[:p], castagnoli))
	return dst[:start+size], nil
}

// peekHeader reads the fixed header fields without any validation; callers
// use it only on frames that passed decodeFrame or for diagnostics.
func peekHeader(b []byte) frameHeader {
	return frameHeader{
		count:    binary.LittleEndian.Uint32(b[offCount:]),
		firstID:  binary.LittleEndian.Uint64(b[offFirstID:]),
		lastID:   binary.LittleEndian.Uint64(b[offLastID:]),
		time:     int64(binary.LittleEndian.Uint64(b[offTime:])),
		indexLen: binary.LittleEndian.Uint32(b[offIndexLen:]),
	}
}

// readUvarint decodes a canonical (minimal) uvarint from b at p.
func readUvarint(b []byte, p int) (uint64, int, bool) {
	if p >= len(b) {
		return 0, 0, false
	}
	v, n := binary.Uvarint(b[p:])
	if n <= 0 || n != uvarintLen(v) {
		return 0, 0, false
	}
	return v, n, true
}

// decodeFrame validates a whole frame: length, magic, version, CRC32C and
// the consistency of header, index and payload. Only after it returns nil may
// a frame's bytes be interpreted.
func decodeFrame(b []byte) (frameHeader, error) {
	if len(b) < minFrameLen {
		return frameHeader{}, errBadFrame
	}
	if len(b) > maxFrameLen {
		return frameHeader{}, errFrameTooBig
	}
	if b[offMagic] != frameMagic0 || b[offMagic+1] != frameMagic1 || b[offMagic+2] != frameMagic2 || b[offVersion] != frameVersion {
		return frameHeader{}, errBadMagic
	}
	body := len(b) - frameCRCLen
	if crc32.Checksum(b[:body], castagnoli) != binary.LittleEndian.Uint32(b[body:]) {
		return frameHeader{}, errBadCRC
	}
	h := peekHeader(b)
	if h.count == 0 {
		return h, errEmptyFrame
	}
	if h.lastID < h.firstID || uint64(h.indexLen) > uint64(body-frameHdrLen) ||
		uint64(h.count) > uint64(h.indexLen)/minIndexEntry {
		return h, errBadFrame
	}
	idx := b[frameHdrLen : frameHdrLen+int(h.indexLen)]
	payload := uint64(body - frameHdrLen - int(h.indexLen))
	var (
		p   int
		id  = h.firstID
		sum uint64
	)
	for i := uint32(0); i < h.count; i++ {
		d, n, ok := readUvarint(idx, p)
		if !ok {
			return h, errNonCanonical
		}
		p += n
		if (i == 0) != (d == 0) {
			return h, errBadFrame // first delta is 0, every later one >= 1
		}
		if id+d < id {
			return h, errBadFrame
		}
		id += d
		for k := 0; k < 2; k++ {
			l, n, ok := readUvarint(idx, p)
			if !ok {
				return h, errNonCanonical
			}
			p += n
			if l > payload || sum+l > payload {
				return h, errBadFrame
			}
			sum += l
		}
	}
	if p != len(idx) || id != h.lastID || sum != payload {
		return h, errBadFrame
	}
	return h, nil
}

// frameIter walks the events of a frame that passed decodeFrame.
type frameIter struct {
	b    []byte
	left uint32
	ip   int // next index byte
	pp   int // next payload byte
	id   uint64
}

func (it *frameIter) reset(b []byte, h frameHeader) {
	it.b = b
	it.left = h.count
	it.ip = frameHdrLen
	it.pp = frameHdrLen + int(h.indexLen)
	it.id = h.firstID
}

func (it *frameIter) more() bool { return it.left > 0 }

// next returns the next event; its slices alias the frame bytes. The frame
// was validated, so the uvarints are known to be well formed and in range.
func (it *frameIter) next() Event {
	d, n := binary.Uvarint(it.b[it.ip:])
	it.ip += n
	ml, n := binary.Uvarint(it.b[it.ip:])
	it.ip += n
	dl, n := binary.Uvarint(it.b[it.ip:])
	it.ip += n
	it.id += d
	ev := Event{ID: it.id}
	ev.Meta = it.b[it.pp : it.pp+int(ml) : it.pp+int(ml)]
	it.pp += int(ml)
	ev.Data = it.b[it.pp : it.pp+int(dl) : it.pp+int(dl)]
	it.pp += int(dl)
	it.left--
	return ev
}

// Entry parsing: a tidwall/wal binary segment file is a sequence of entries,
// each a uvarint length followed by that many bytes (one frame here).

type entryStatus int

const (
	entryOK      entryStatus = iota
	entryEnd                 // no bytes at all at this offset
	entryPartial             // the entry runs past the end of the bytes
	entryBad                 // the length itself is malformed or too large
)

// parseEntry parses the wal entry at the start of b.
func parseEntry(b []byte) (frame []byte, n int, st entryStatus) {
	if len(b) == 0 {
		return nil, 0, entryEnd
	}
	size, k := binary.Uvarint(b)
	if k == 0 {
		return nil, 0, entryPartial
	}
	if k < 0 || size > maxFrameLen {
		return nil, 0, entryBad
	}
	if uint64(len(b)-k) < size {
		return nil, 0, entryPartial
	}
	return b[k : k+int(size)], k + int(size), entryOK
}

// segScan is the result of scanning the bytes of one segment file.
type segScan struct {
	frames      int
	first, last frameHeader
	end         int   // offset just past the last valid frame
	bad         int   // offset of the first damaged entry, or -1
	badErr      error // why it is damaged
}

// scanSegment validates entries from the start of data and stops at the first
// damaged one. fn, if not nil, sees every valid frame.
func scanSegment(data []byte, fn func(off, n int, h frameHeader, frame []byte)) segScan {
	s := segScan{bad: -1}
	off := 0
	for {
		fr, n, st := parseEntry(data[off:])
		switch st {
		case entryEnd:
			s.end = off
			return s
		case entryPartial:
			s.end, s.bad, s.badErr = off, off, errTruncEntry
			return s
		case entryBad:
			s.end, s.bad, s.badErr = off, off, errBadEntry
			return s
		}
		h, err := decodeFrame(fr)
		if err != nil {
			s.end, s.bad, s.badErr = off, off, err
			return s
		}
		if s.frames > 0 && h.firstID <= s.last.lastID {
			s.end, s.bad, s.badErr = off, off, fmt.Errorf("%w: event %d follows %d", ErrOutOfOrder, h.firstID, s.last.lastID)
			return s
		}
		if fn != nil {
			fn(off, n, h, fr)
		}
		if s.frames == 0 {
			s.first = h
		}
		s.last = h
		s.frames++
		off += n
	}
}

// findValidFrame searches data from offset from for the next wal entry that
// holds a valid frame: the resynchronisation step after damage.
func findValidFrame(data []byte, from int) (off int, h frameHeader, ok bool) {
	for p := from; p < len(data); p++ {
		size, k := binary.Uvarint(data[p:])
		if k <= 0 || size < minFrameLen || size > maxFrameLen || uint64(len(data)-p-k) < size {
			continue
		}
		fr := data[p+k : p+k+int(size)]
		if fr[offMagic] != frameMagic0 || fr[offMagic+1] != frameMagic1 || fr[offMagic+2] != frameMagic2 {
			continue
		}
		if h, err := decodeFrame(fr); err == nil {
			return p, h, true
		}
	}
	return 0, frameHeader{}, false
}

// uvarintPrefix decodes the uvarint at the start of b (k <= 0 if it is
// incomplete or overflows).
func uvarintPrefix(b []byte) (uint64, int) { return binary.Uvarint(b) }
