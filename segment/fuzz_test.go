package segment

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func seedFrames() [][]byte {
	var seeds [][]byte
	for _, evs := range [][]Event{
		{{ID: 0}},
		{{ID: 7, Meta: []byte("k"), Data: []byte("hello")}, {ID: 9, Data: []byte("x")}, {ID: 300}},
		makeEvents(1<<40, 20, 1000, 10),
	} {
		f, _ := appendFrame(nil, evs, 12345)
		seeds = append(seeds, f)
	}
	return seeds
}

// FuzzDecodeFrame feeds arbitrary bytes (with the CRC fixed up, so the fuzzer
// reaches the structural checks) to the frame decoder: it must never panic or
// read out of bounds, and a frame it accepts must re-encode to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC && len(b) >= frameCRCLen {
			b = bytes.Clone(b)
			body := len(b) - frameCRCLen
			binary.LittleEndian.PutUint32(b[body:], crc32.Checksum(b[:body], castagnoli))
		}
		h, err := decodeFrame(b)
		if err != nil {
			return
		}
		var it frameIter
		it.reset(b, h)
		var evs []Event
		for it.more() {
			ev := it.next()
			if len(evs) > 0 && ev.ID <= evs[len(evs)-1].ID {
				t.Fatalf("IDs not increasing: %d after %d", ev.ID, evs[len(evs)-1].ID)
			}
			evs = append(evs, ev)
		}
		if uint32(len(evs)) != h.count || evs[0].ID != h.firstID || evs[len(evs)-1].ID != h.lastID {
			t.Fatalf("decoded %d events %d..%d, header says %d %d..%d", len(evs), evs[0].ID, evs[len(evs)-1].ID, h.count, h.firstID, h.lastID)
		}
		re, err := appendFrame(nil, evs, h.time)
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("accepted frame does not re-encode to itself (err %v)", err)
		}
	})
}

// FuzzScanSegment feeds arbitrary segment-file bytes to the entry parser and
// the resynchronising scan.
func FuzzScanSegment(f *testing.F) {
	var seg []byte
	for _, s := range seedFrames() {
		seg = binary.AppendUvarint(seg, uint64(len(s)))
		seg = append(seg, s...)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		end := 0
		sc := scanSegment(data, func(off, n int, h frameHeader, fr []byte) {
			if off != end || off+n > len(data) {
				t.Fatalf("frame at %d+%d out of order or bounds (%d)", off, n, len(data))
			}
			end = off + n
		})
		if sc.end != end || (sc.bad >= 0 && sc.bad != sc.end) || sc.end > len(data) {
			t.Fatalf("scan end %d bad %d, frames end at %d", sc.end, sc.bad, end)
		}
		if sc.bad < 0 && sc.end != len(data) {
			t.Fatalf("clean scan stopped at %d of %d", sc.end, len(data))
		}
		if p, _, ok := findValidFrame(data, 0); ok && p >= len(data) {
			t.Fatalf("resync beyond the data: %d", p)
		}
	})
}

// TestScanSegmentRandomCutsAndFlips builds segment files of random frames,
// cuts and damages them at random, and checks what the scan keeps.
func TestScanSegmentRandomCutsAndFlips(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for iter := 0; iter < 500; iter++ {
		var seg []byte
		var ends []int
		id := uint64(rng.IntN(1000))
		for f := 0; f < 1+rng.IntN(8); f++ {
			evs := make([]Event, 1+rng.IntN(5))
			for k := range evs {
				id += 1 + uint64(rng.IntN(3))
				evs[k] = Event{ID: id, Meta: payload(id, rng.IntN(4)), Data: payload(id, rng.IntN(300))}
			}
			fr, err := appendFrame(nil, evs, int64(f))
			if err != nil {
				t.Fatal(err)
			}
			seg = binary.AppendUvarint(seg, uint64(len(fr)))
			seg = append(seg, fr...)
			ends = append(ends, len(seg))
		}
		cut := rng.IntN(len(seg) + 1)
		data := bytes.Clone(seg[:cut])
		whole := 0
		for _, e := range ends {
			if e <= cut {
				whole++
			}
		}
		if sc := scanSegment(data, nil); sc.frames != whole || (sc.bad >= 0) != (whole < len(ends) && cut > 0 && cut != prevEnd(ends, whole)) {
			t.Fatalf("iter %d cut %d: scan kept %d frames (bad %d), want %d", iter, cut, sc.frames, sc.bad, whole)
		}
		if len(data) > 0 {
			pos := rng.IntN(len(data))
			data[pos] ^= 1 << rng.IntN(8)
			sc := scanSegment(data, nil)
			before := 0
			for _, e := range ends {
				if e <= pos {
					before++
				}
			}
			if sc.frames < before || sc.frames > whole || sc.frames == whole && whole > before {
				t.Fatalf("iter %d flip at %d: scan kept %d frames, %d precede the damage, %d whole", iter, pos, sc.frames, before, whole)
			}
		}
	}
}

func prevEnd(ends []int, n int) int {
	if n == 0 {
		return 0
	}
	return ends[n-1]
}
