package ring

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// appendRecord adds a record of meta and data to b.
func appendRecord(t testing.TB, b *Batch, meta, data []byte) {
	t.Helper()
	buf := b.Begin()
	buf = append(buf, meta...)
	buf = append(buf, data...)
	if err := b.End(buf, len(meta)); err != nil {
		t.Fatal(err)
	}
}

// A written batch reads back record by record, with consecutive IDs that
// follow those of claims around it, across many laps of a small ring (so
// batches meet the lap boundary and are preceded by padding).
func TestWriteBatchReadsBackAcrossLaps(t *testing.T) {
	r := newTestRing(t, Options{Capacity: 64 << 10})
	rd, err := r.Attach("reader")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var b Batch
	var c Claim
	next := uint64(0)
	for round := range 300 {
		k := 1 + round%37
		b.Reset()
		for i := range k {
			appendRecord(t, &b, fmt.Appendf(nil, `{"r":%d,"i":%d}`, round, i), bytes.Repeat([]byte{byte(i)}, (round*7+i*13)%300))
		}
		id0, end, err := r.WriteBatch(&b, time.Second, nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if id0 != next {
			t.Fatalf("round %d: batch got ID %d, want %d", round, id0, next)
		}
		next += uint64(k)
		if round%5 == 0 { // a claim between batches takes the next ID
			if err := r.Claim(&c, []RecordSize{{Meta: 2, Data: 3}}, time.Second); err != nil {
				t.Fatal(err)
			}
			copy(c.Meta(0), "{}")
			copy(c.Data(0), "abc")
			if c.ID(0) != next {
				t.Fatalf("claim after batch got ID %d, want %d", c.ID(0), next)
			}
			if err := c.Commit(); err != nil {
				t.Fatal(err)
			}
			next++
		}
		for i := range k {
			e, err := rd.Next(time.Second)
			if err != nil {
				t.Fatalf("round %d record %d: %v", round, i, err)
			}
			if e.ID != id0+uint64(i) {
				t.Fatalf("round %d record %d: ID %d, want %d", round, i, e.ID, id0+uint64(i))
			}
			if want := fmt.Sprintf(`{"r":%d,"i":%d}`, round, i); string(e.Meta) != want {
				t.Fatalf("round %d record %d: meta %q, want %q", round, i, e.Meta, want)
			}
			if n := (round*7 + i*13) % 300; len(e.Data) != n || !bytes.Equal(e.Data, bytes.Repeat([]byte{byte(i)}, n)) {
				t.Fatalf("round %d record %d: data of %d bytes is not %d bytes of %d", round, i, len(e.Data), n, i)
			}
			if i == k-1 && e.End != end {
				t.Fatalf("round %d: last record ends at %d, WriteBatch said %d", round, e.End, end)
			}
		}
		if round%5 == 0 {
			if e, err := rd.Next(time.Second); err != nil || string(e.Data) != "abc" {
				t.Fatalf("round %d: the claim after the batch: %q, %v", round, e.Data, err)
			}
		}
		rd.Release(rd.Position())
	}
}

// A batch larger than half the ring is refused by name; a batch larger than
// the free space waits for a reader to release, and fails with ErrFull
// naming the reader when none does.
func TestWriteBatchTooLargeAndFull(t *testing.T) {
	r := newTestRing(t, Options{Capacity: 64 << 10})
	var b Batch
	appendRecord(t, &b, []byte("{}"), make([]byte, 40<<10))
	if _, _, err := r.WriteBatch(&b, time.Second, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("batch of 40 KiB in a 64 KiB ring: %v, want ErrTooLarge", err)
	}
	rd, err := r.Attach("slow")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	b.Reset()
	for range 10 {
		appendRecord(t, &b, []byte("{}"), make([]byte, 3000))
	}
	if _, _, err := r.WriteBatch(&b, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.WriteBatch(&b, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	// 60 KiB written and pinned: the third batch does not fit.
	done := make(chan error, 1)
	go func() { _, _, err := r.WriteBatch(&b, 5*time.Second, nil); done <- err }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("a batch larger than the free space was written: %v", err)
	default:
	}
	for range 10 {
		if _, err := rd.Next(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rd.Release(rd.Position())
	if err := <-done; err != nil {
		t.Fatalf("the batch waiting for space: %v", err)
	}
	if _, _, err := r.WriteBatch(&b, 100*time.Millisecond, nil); !errors.Is(err, ErrFull) || !bytes.Contains([]byte(err.Error()), []byte(`"slow"`)) {
		t.Fatalf("batch into a ring the reader pins: %v, want ErrFull naming the reader", err)
	}
}

// End refuses a record whose metadata is longer than what was appended.
func TestBatchEndChecksLengths(t *testing.T) {
	var b Batch
	buf := b.Begin()
	buf = append(buf, "ab"...)
	if err := b.End(buf, 3); err == nil {
		t.Fatal("End took 3 bytes of metadata out of 2")
	}
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("the refused record stayed: %d records, %d bytes", b.Len(), b.Bytes())
	}
}

// WriteBatch refuses a batch with a record begun and not ended (its bytes
// would lie in the claim with no header), and one whose largest record the
// ring cannot take, also when that record was dropped and another remains.
func TestWriteBatchChecksWhatEndDidNot(t *testing.T) {
	r := newTestRing(t, Options{Capacity: 64 << 10})
	var b Batch
	appendRecord(t, &b, []byte("{}"), make([]byte, 100))
	open := b.Begin()
	_ = append(open, "half"...)
	if _, _, err := r.WriteBatch(&b, time.Second, nil); err == nil || !strings.Contains(err.Error(), "not ended") {
		t.Fatalf("batch with an open record: %v, want a refusal", err)
	}
	b.Cancel()
	appendRecord(t, &b, []byte("{}"), make([]byte, 40<<10))
	b.DropLast()
	id, _, err := r.WriteBatch(&b, time.Second, nil)
	if err != nil {
		t.Fatalf("batch of one 100-byte record after the large one was dropped: %v", err)
	}
	rd := r.NewCursor(0)
	e, err := rd.Next(time.Second)
	if err != nil || e.ID != id || len(e.Data) != 100 || string(e.Meta) != "{}" {
		t.Fatalf("read back %+v, %v; want ID %d with 100 bytes", e, err, id)
	}
}

// A batch misused so that its sizes and its bytes disagree (two DropLasts,
// a DropLast or a Cancel after an End) is refused before anything is
// claimed: one record's IDs over two records' bytes would leave readers at
// a header nobody writes.
func TestWriteBatchRefusesSizesThatDisagreeWithItsBytes(t *testing.T) {
	r := newTestRing(t, Options{Capacity: 64 << 10})
	for name, misuse := range map[string]func(b *Batch){
		"DropLast twice": func(b *Batch) {
			for _, n := range []int{100, 200, 300} {
				appendRecord(t, b, []byte("{}"), make([]byte, n))
			}
			b.DropLast()
			b.DropLast()
		},
		"DropLast with a Begin open": func(b *Batch) {
			appendRecord(t, b, []byte("{}"), make([]byte, 100))
			appendRecord(t, b, []byte("{}"), make([]byte, 200))
			b.Begin()
			b.DropLast()
		},
		"Cancel after End": func(b *Batch) {
			appendRecord(t, b, []byte("{}"), make([]byte, 300))
			b.Cancel()
			appendRecord(t, b, []byte("{}"), make([]byte, 100))
		},
	} {
		var b Batch
		misuse(&b)
		if _, _, err := r.WriteBatch(&b, time.Second, nil); err == nil || !strings.Contains(err.Error(), "holds records of") {
			t.Errorf("%s: WriteBatch gave %v, want a refusal", name, err)
		}
	}
	if tail, id := load16(r.hdr, OffTailPos); tail != 0 || id != r.firstID {
		t.Fatalf("refused batches claimed space: tail %d, next ID %d", tail, id)
	}
}

// A producer process killed between the copy and the commit of a batch:
// readers wait while it lives, then skip its whole batch as padding (its
// 20 IDs are lost, never reused) and read what was written after it.
func TestProducerKilledMidBatch(t *testing.T) { killedProducerIsSkipped(t, "batchhang", 20) }

// NextBatch reads what is committed, up to its room, in order, and says
// the end of the stream only after the last records.
func TestNextBatch(t *testing.T) {
	r := newTestRing(t, Options{Capacity: 64 << 10})
	rd, err := r.Attach("r")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	dst := make([]Entry, 8)
	if n, err := rd.NextBatch(dst); n != 0 || err != nil {
		t.Fatalf("empty ring: %d, %v", n, err)
	}
	var b Batch
	for i := range 11 {
		appendRecord(t, &b, []byte("{}"), []byte{byte(i)})
	}
	if _, _, err := r.WriteBatch(&b, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	r.MarkComplete()
	got := 0
	for _, want := range []int{8, 3} {
		n, err := rd.NextBatch(dst)
		if n != want || err != nil {
			t.Fatalf("NextBatch: %d, %v; want %d records", n, err, want)
		}
		for _, e := range dst[:n] {
			if e.ID != uint64(got) || e.Data[0] != byte(got) {
				t.Fatalf("record %d: ID %d data %v", got, e.ID, e.Data)
			}
			got++
		}
	}
	if n, err := rd.NextBatch(dst); n != 0 || !errors.Is(err, ErrEndOfStream) {
		t.Fatalf("after the last record of a complete ring: %d, %v", n, err)
	}
}
