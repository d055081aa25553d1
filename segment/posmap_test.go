package segment

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPositionMapStoresReopensAndConverts(t *testing.T) {
	dir := t.TempDir()
	p, _, ok, err := OpenPositionMap(dir, "c")
	if err != nil || ok {
		t.Fatalf("new position: ok=%v err=%v, want none", ok, err)
	}
	for _, v := range []uint64{1, 5, 3, 9, 10} {
		if err := p.Store(v); err != nil {
			t.Fatal(err)
		}
	}
	// Another process reads it while it is open, as ID floors and retention do.
	if v, ok, err := LoadPosition(dir, "c"); err != nil || !ok || v != 10 {
		t.Fatalf("LoadPosition of an open map: %d %v %v, want 10", v, ok, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, v, ok, err := OpenPositionMap(dir, "c")
	if err != nil || !ok || v != 10 {
		t.Fatalf("reopened: %d %v %v, want 10 (positions never move back)", v, ok, err)
	}
	p.Store(11)
	p.Close()
	if m, err := Positions(dir); err != nil || m["c"] != 11 {
		t.Fatalf("Positions: %v %v", m, err)
	}
	// The older format is read and converted.
	if err := StorePosition(dir, "old", 42); err != nil {
		t.Fatal(err)
	}
	p, v, ok, err = OpenPositionMap(dir, "old")
	if err != nil || !ok || v != 42 {
		t.Fatalf("a DSP1 position: %d %v %v, want 42", v, ok, err)
	}
	p.Store(43)
	p.Close()
	if v, _, _ := LoadPosition(dir, "old"); v != 43 {
		t.Fatalf("after conversion: %d, want 43", v)
	}
}

// A store torn by the death of its process leaves the older slot: the
// consumer resumes one acknowledgement earlier, never later. Both slots
// damaged is an error naming the file.
func TestPositionMapTornAndDamaged(t *testing.T) {
	dir := t.TempDir()
	p, _, _, err := OpenPositionMap(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	p.Store(7)
	p.Store(8)
	p.Close()
	path := filepath.Join(dir, positionsDir, "c")
	b, _ := os.ReadFile(path)
	// Tear the newer slot: its value written, its check not.
	newer := posSlotA
	if v, _ := slot(b, posSlotB); v == 8 {
		newer = posSlotB
	}
	b[newer] ^= 0xff
	os.WriteFile(path, b, 0o600)
	if _, v, ok, err := OpenPositionMap(dir, "c"); err != nil || !ok || v != 7 {
		t.Fatalf("a torn newer slot: %d %v %v, want the older position 7", v, ok, err)
	}
	b[posSlotA+3] ^= 0x10
	b[posSlotB+3] ^= 0x10
	os.WriteFile(path, b, 0o600)
	if _, _, _, err := OpenPositionMap(dir, "c"); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("both slots damaged: want an error naming %s, got %v", path, err)
	}
	if _, _, err := LoadPosition(dir, "c"); err == nil {
		t.Fatal("LoadPosition of a damaged map: want an error")
	}
}

func FuzzDecodePositionMap(f *testing.F) {
	img := make([]byte, posMapLen)
	copy(img, posMapMagic)
	f.Add(img)
	putSlot(img, posSlotA, 5)
	f.Add(img)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok, err := decodePositionMap(b)
		if err == nil && ok {
			a, aok := slot(b, posSlotA)
			c, cok := slot(b, posSlotB)
			if !(aok && v == a) && !(cok && v == c) {
				t.Fatalf("decoded %d, which no valid slot holds", v)
			}
		}
	})
}

func BenchmarkPositionMapStore(b *testing.B) {
	p, _, _, err := OpenPositionMap(b.TempDir(), "c")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for i := 0; b.Loop(); i++ {
		p.Store(uint64(i + 1))
	}
}
