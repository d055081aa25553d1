package segment

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// payload is the deterministic data of event id.
func payload(id uint64, size int) []byte {
	b := make([]byte, size)
	x := id*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// makeEvents returns n events from first with ID step step, meta and data
// derived from the ID.
func makeEvents(first uint64, n int, step uint64, size int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		id := first + uint64(i)*step
		evs[i] = Event{ID: id, Meta: []byte(fmt.Sprintf("m%d", id%7)), Data: payload(id, size+int(id%5))}
	}
	return evs
}

func checkEvent(t testing.TB, got, want Event) {
	t.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Meta, want.Meta) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("event mismatch: got ID %d meta %q len %d, want ID %d meta %q len %d",
			got.ID, got.Meta, len(got.Data), want.ID, want.Meta, len(want.Data))
	}
}

func copyEvent(e Event) Event {
	return Event{ID: e.ID, Meta: append([]byte(nil), e.Meta...), Data: append([]byte(nil), e.Data...)}
}

// readAll reads dir from id until io.EOF.
func readAll(t testing.TB, dir string, from uint64) []Event {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Seek(from); err != nil {
		t.Fatal(err)
	}
	var out []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(out), err)
		}
		out = append(out, copyEvent(ev))
	}
}

func writeLog(t testing.TB, dir string, o Options, evs []Event, batch int) {
	t.Helper()
	w, err := OpenWriter(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(evs); i += batch {
		if err := w.Append(evs[i:min(i+batch, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// frameLoc is where a frame lies on disk.
type frameLoc struct {
	file        string
	off, end    int // the whole wal entry: length prefix and frame
	first, last uint64
}

func frameLocs(t testing.TB, dir string) []frameLoc {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var locs []frameLoc
	for _, s := range segs {
		data, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			t.Fatal(err)
		}
		sc := scanSegment(data, func(off, n int, h frameHeader, _ []byte) {
			locs = append(locs, frameLoc{s.name, off, off + n, h.firstID, h.lastID})
		})
		if sc.bad >= 0 {
			t.Fatalf("%s damaged at %d: %v", s.name, sc.bad, sc.badErr)
		}
	}
	return locs
}

func flipBit(t testing.TB, path string, off int, bit uint) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func asCorruption(err error) (*CorruptionError, bool) {
	var ce *CorruptionError
	ok := errors.As(err, &ce)
	return ce, ok
}
