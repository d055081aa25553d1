package ring

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// exercise uses an opened ring the way a reader and a producer would; it
// must not panic or hang whatever the ring holds.
func exercise(t *testing.T, r *Ring) {
	watchdog := time.AfterFunc(5*time.Second, func() {
		buf := make([]byte, 1<<20)
		panic("exercise hung:\n" + string(buf[:runtime.Stack(buf, true)]))
	})
	defer watchdog.Stop()
	r.SetAbandonTimeout(0)
	r.Stats()
	rd, err := r.Attach("fuzz")
	if err != nil {
		return
	}
	for i := 0; i < 5000; i++ {
		e, ok, err := rd.TryNext()
		if err != nil || !ok {
			break
		}
		if e.End <= e.Pos || RecHeaderSize+len(e.Meta)+len(e.Data) > r.Capacity() {
			t.Fatalf("bad entry %+v", e)
		}
	}
	rd.SeekID(3)
	var c Claim
	if r.Claim(&c, []RecordSize{{Meta: 3, Data: 40}}, 0) == nil {
		c.Commit()
	}
	var b Batch
	for range 2 {
		buf := b.Begin()
		buf = append(buf, "{}abc"...)
		b.End(buf, 2)
	}
	r.WriteBatch(&b, 0, nil)
	rd.Close()
	r.ReclaimDead()
}

func ringTemplate(t testing.TB, dir string) []byte {
	r, err := Create(dir, "tmpl", Options{Capacity: MinCapacity, ReaderSlots: 4, FirstID: 1})
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := r.Attach("x")
	var c Claim
	push(r, &c, []RecordSize{{Meta: 5, Data: 20}, {Data: 100}}, 0, 0, 0)
	push(r, &c, []RecordSize{{Meta: 1, Data: 30}}, 0, 2, 0)
	var bt Batch // records written as the driver's stage writes them
	for i := range 3 {
		buf := bt.Begin()
		buf = append(buf, `{"b":1}`...)
		buf = append(buf, make([]byte, 10*i)...)
		bt.End(buf, 7)
	}
	r.WriteBatch(&bt, 0, nil)
	rd.Close()
	r.Close()
	b, err := os.ReadFile(filepath.Join(dir, "tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzOpenHeader(f *testing.F) {
	tmpl := ringTemplate(f, f.TempDir())
	hs := headerSizeFor(4)
	f.Add(tmpl[:hs])
	f.Add(tmpl[:64])
	f.Add([]byte("DSPRING\x00\x02"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, hdr []byte) {
		b := append([]byte(nil), tmpl...)
		copy(b[:hs], hdr)
		if err := os.WriteFile(filepath.Join(dir, "f"), b, 0600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(dir, "f", shm.Trust{})
		if err != nil {
			return
		}
		defer r.Close()
		exercise(t, r)
	})
}

func FuzzReadRecords(f *testing.F) {
	tmpl := ringTemplate(f, f.TempDir())
	hs := headerSizeFor(4)
	f.Add(uint16(0), uint64(0), tmpl[hs:hs+256])
	f.Add(uint16(48), uint64(4096), []byte{0x20, 0, 0, 0, 0, 0, 0, 2})
	f.Add(uint16(0), uint64(1<<16), []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, at uint16, tail uint64, data []byte) {
		b := append([]byte(nil), tmpl...)
		copy(b[hs+int(at):], data)
		// a tail anywhere a valid ring allows it
		tail = (tail &^ 15) % (2 * MinCapacity)
		if tail < load64(b, OffHeadCache) || tail-load64(b, OffHeadCache) > MinCapacity {
			tail = load64(b, OffTailPos)
		}
		binary.LittleEndian.PutUint64(b[OffTailPos:], tail)
		// and a tail ID the tail position allows (no more IDs than records)
		if first := load64(b, OffFirstID); !idFits(load64(b, OffTailID), first, tail) {
			binary.LittleEndian.PutUint64(b[OffTailID:], first+tail/RecHeaderSize)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), b, 0600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(dir, "f", shm.Trust{})
		if err != nil {
			t.Fatalf("valid header refused: %v", err)
		}
		defer r.Close()
		start := time.Now()
		exercise(t, r)
		// and a cursor from every 16-byte position of the damaged area
		for p := uint64(at) &^ 15; p < uint64(at)+uint64(len(data)) && p < MinCapacity; p += 16 {
			cur := r.NewCursor(p)
			for i := 0; i < 100; i++ {
				if _, ok, err := cur.TryNext(); err != nil || !ok {
					break
				}
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("reading took too long")
		}
	})
}
