package driver_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

// recordSink keeps what PullRecords hands it, as the C library does: the
// metadata in its own memory, the rest by value.
type recordSink struct {
	room []byte
	mds  []string
	recs []driver.Record
}

func (s *recordSink) MetadataRoom(n int) []byte {
	s.room = make([]byte, n)
	return s.room
}

func (s *recordSink) Add(r driver.Record) {
	s.mds = append(s.mds, string(s.room))
	s.recs = append(s.recs, r)
}

func (s *recordSink) reset() { s.mds, s.recs = s.mds[:0], s.recs[:0] }

func recordPuller(t *testing.T, c diaspora.Consumer) driver.RecordPuller {
	t.Helper()
	rp, ok := c.Interface().(driver.RecordPuller)
	if !ok {
		t.Fatalf("the shm driver's consumer %T is not a driver.RecordPuller", c.Interface())
	}
	return rp
}

// recordMeta is the metadata of event i of the tests below; some are {}.
func recordMeta(i int) string {
	if i%5 == 0 {
		return `{}`
	}
	return fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("m", i%23))
}

// Records hand every event of both partitions once, in order per
// partition, with its metadata, its data in place (or none for a consumer
// selecting none) and its partition; acknowledging the last record of each
// partition stores the name's position there.
func TestPullRecordsHandsEveryEventOnceInPlace(t *testing.T) {
	for _, mode := range []string{"zerocopy", "meta"} {
		t.Run(mode, func(t *testing.T) {
			d, _ := newDriver(t)
			th := createTopic(t, d, "t", `{"durability":"none","ring_size":"4MiB","num_partitions":2}`)
			p, _ := th.Producer("p", diaspora.BatchSize(32))
			const n = 3000
			for i := range n {
				p.PushTo(i%2, diaspora.MustMetadata(recordMeta(i)), diaspora.DataView{[]byte(fmt.Sprintf("data-%d", i))})
			}
			if _, err := p.Flush().Wait(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			var args []diaspora.Arg
			if mode == "zerocopy" {
				args = append(args, diaspora.FullDataSelector)
			}
			c, err := th.Consumer("c", args...)
			if err != nil {
				t.Fatal(err)
			}
			rp := recordPuller(t, c)
			next := [2]uint64{} // the next ID wanted per partition
			last := map[int]driver.Record{}
			var sink recordSink
			for got := 0; got < n; {
				sink.reset()
				k, err := rp.PullRecords(&sink, 100, 5*time.Second)
				if err != nil {
					t.Fatalf("after %d records: %v", got, err)
				}
				if k != len(sink.recs) || k == 0 || k > 100 {
					t.Fatalf("PullRecords said %d, handed %d (max 100)", k, len(sink.recs))
				}
				for j, r := range sink.recs {
					part, info, err := rp.RecordPartition(r.Slot)
					if err != nil || string(info) != th.Partitions()[part].Dump() {
						t.Fatalf("record slot %d: partition %d %s, %v", r.Slot, part, info, err)
					}
					if r.ID != next[part] {
						t.Fatalf("partition %d: record %d, want %d", part, r.ID, next[part])
					}
					next[part]++
					i := int(r.ID)*2 + part // the pushes alternated partitions
					if sink.mds[j] != recordMeta(i) {
						t.Fatalf("event %d: metadata %s, want %s", i, sink.mds[j], recordMeta(i))
					}
					switch want := fmt.Sprintf("data-%d", i); {
					case mode == "meta" && r.Data != nil:
						t.Fatalf("event %d of a consumer selecting no data has data %q", i, r.Data)
					case mode == "zerocopy" && string(r.Data) != want:
						t.Fatalf("event %d: data %q, want %q", i, r.Data, want)
					}
					last[r.Slot] = r
				}
				got += k
			}
			if next != [2]uint64{n / 2, n / 2} {
				t.Fatalf("records per partition %v", next)
			}
			for _, wait := range []time.Duration{50 * time.Millisecond, 0} {
				if _, err := rp.PullRecords(&sink, 100, wait); !errors.Is(err, diaspora.ErrTimeout) {
					t.Fatalf("PullRecords with nothing left, waiting %v: %v, want a timeout", wait, err)
				}
			}
			for slot, r := range last {
				if err := rp.AcknowledgeRecord(slot, r.ID, r.End); err != nil {
					t.Fatal(err)
				}
			}
			if err := rp.AcknowledgeRecord(2, 0, 0); !errors.Is(err, diaspora.ErrInvalidArgument) {
				t.Fatalf("AcknowledgeRecord of slot 2 of 2: %v, want ErrInvalidArgument", err)
			}
			if _, _, err := rp.RecordPartition(-1); !errors.Is(err, diaspora.ErrInvalidArgument) {
				t.Fatalf("RecordPartition(-1): %v, want ErrInvalidArgument", err)
			}
			c.Close()
			p.PushTo(1, diaspora.MustMetadata(`{"after":1}`), nil)
			p.Flush().Wait(5 * time.Second)
			c, err = th.Consumer("c", args...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ev, err := c.Pull().Wait(5 * time.Second)
			if err != nil || ev.Metadata().Dump() != `{"after":1}` {
				t.Fatalf("the name reopened after its acknowledged records got %s, %v; want the event pushed after", ev.Metadata(), err)
			}
		})
	}
}

// The end of the stream, events a Pull left in its batch, and consumers
// whose events are not read in place (an allocator, another serializer)
// are events: PullRecords says so and hands nothing, and the events pulled
// meanwhile and the records after them follow each other without a gap.
func TestPullRecordsLeavesEventsToEventPulls(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(64))
	const n = 200
	for i := range n {
		p.Push(diaspora.MustMetadata(recordMeta(i)), diaspora.DataView{[]byte("d")})
	}
	if _, err := p.Flush().Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	alloc := diaspora.DataAllocator(func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataView, error) {
		return diaspora.DataView{make([]byte, d.Size())}, nil
	})
	ca, err := th.Consumer("alloc", diaspora.FullDataSelector, alloc)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	var sink recordSink
	if k, err := recordPuller(t, ca).PullRecords(&sink, 10, time.Second); !errors.Is(err, driver.ErrNotRecords) || k != 0 {
		t.Fatalf("PullRecords of a consumer with an allocator: %d, %v; want ErrNotRecords", k, err)
	}

	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rp := recordPuller(t, c)
	want := uint64(0)
	ev, err := c.Pull().Wait(time.Second) // the pass's other events wait in the consumer's batch
	if err != nil || ev.ID() != want {
		t.Fatalf("Pull: %v, %v", ev.ID(), err)
	}
	want++
	if k, err := rp.PullRecords(&sink, 10, time.Second); !errors.Is(err, driver.ErrNotRecords) || k != 0 {
		t.Fatalf("PullRecords behind a Pull's batch: %d, %v; want ErrNotRecords", k, err)
	}
	for ended := false; !ended; {
		sink.reset()
		k, err := rp.PullRecords(&sink, 7, time.Second)
		if errors.Is(err, driver.ErrNotRecords) {
			bc := c.Interface().(diaspora.BatchConsumerInterface)
			evs := make([]diaspora.Event, 100)
			m, err := bc.PullBatch(evs, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs[:m] {
				if ev.ID() == diaspora.NoMoreEvents {
					ended = true
					break
				}
				if ev.ID() != want {
					t.Fatalf("PullBatch gave event %d, want %d", ev.ID(), want)
				}
				want++
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range sink.recs[:k] {
			if r.ID != want {
				t.Fatalf("PullRecords gave event %d, want %d", r.ID, want)
			}
			want++
		}
	}
	if want != n {
		t.Fatalf("the stream ended after %d events of %d", want, n)
	}
	if k, err := rp.PullRecords(&sink, 7, time.Second); !errors.Is(err, driver.ErrNotRecords) || k != 0 {
		t.Fatalf("PullRecords at the end of the stream: %d, %v; want ErrNotRecords", k, err)
	}
}

// A record whose metadata is damaged in the ring is not handed to the
// sink and not skipped: the records before it are handed, and then every
// pull of it fails naming it, as an event pull does.
func TestPullRecordsStopsAtDamagedMetadata(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	p, _ := th.Producer("p")
	push := func(md string) {
		if _, err := p.Push(diaspora.MustMetadata(md), diaspora.DataView{[]byte("ok")}).Wait(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	push(`{"ok":0}`)
	paths := ringPaths(t, opts)
	r, err := ring.Open(filepath.Dir(paths[0]), filepath.Base(paths[0]), shm.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cl ring.Claim
	bad := []byte(`{"unclosed":`)
	if err := r.Claim(&cl, []ring.RecordSize{{Meta: len(bad), Data: 4}}, time.Second); err != nil {
		t.Fatal(err)
	}
	copy(cl.Meta(0), bad)
	copy(cl.Data(0), "data")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	push(`{"ok":2}`)

	// Records first: the good one, then the damaged one is left.
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	rp := recordPuller(t, c)
	var sink recordSink
	if k, err := rp.PullRecords(&sink, 10, time.Second); err != nil || k != 1 || sink.recs[0].ID != 0 || sink.mds[0] != `{"ok":0}` {
		t.Fatalf("PullRecords before the damaged record: %d %v, %v", k, sink.mds, err)
	}
	for range 2 {
		if k, err := rp.PullRecords(&sink, 10, time.Second); !errors.Is(err, driver.ErrNotRecords) || k != 0 {
			t.Fatalf("PullRecords at the damaged record: %d, %v; want ErrNotRecords", k, err)
		}
		ev, err := c.Pull().Wait(time.Second)
		if err == nil || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "not skipped") {
			t.Fatalf("Pull of the damaged record: %v, %v; want an error naming event 1", ev.Metadata(), err)
		}
	}
	c.Close()

	// The damaged record first in a pass: PullRecords's own error.
	c = openConsumer(t, th, "c", diaspora.FullDataSelector)
	rp = recordPuller(t, c)
	if k, err := rp.PullRecords(&sink, 10, time.Second); err != nil || k != 1 {
		t.Fatalf("PullRecords: %d, %v", k, err)
	}
	if err := rp.AcknowledgeRecord(sink.recs[0].Slot, sink.recs[0].ID, sink.recs[0].End); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = openConsumer(t, th, "c", diaspora.FullDataSelector)
	rp = recordPuller(t, c)
	sink.reset()
	k, err := rp.PullRecords(&sink, 10, time.Second)
	if err == nil || k != 0 || len(sink.recs) != 0 || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "not skipped") {
		t.Fatalf("PullRecords starting at the damaged record: %d %v, %v; want an error naming event 1", k, sink.mds, err)
	}
	if _, err := c.Pull().Wait(time.Second); err == nil || !strings.Contains(err.Error(), "event 1") {
		t.Fatalf("Pull after it: %v; want the error again", err)
	}
}

// A zero-copy consumer's records hold their ring space until acknowledged:
// producers wait for it, and what the records point at stays as written.
func TestPullRecordsHoldTheRingUntilAcknowledged(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB","push_timeout":"100ms"}`)
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rp := recordPuller(t, c)
	p, _ := th.Producer("p")
	payload := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("%04d", i), 250)) }
	var sink recordSink
	pushed := 0
	for ; pushed < 200; pushed++ {
		if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{payload(pushed)}).Wait(5 * time.Second); err != nil {
			break // the ring is full of what the records hold
		}
		if _, err := rp.PullRecords(&sink, 1000, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if pushed == 200 || pushed < 10 {
		t.Fatalf("%d pushes of 1000 bytes into a 64 KiB ring held by unacknowledged records", pushed)
	}
	for i, r := range sink.recs {
		if string(r.Data) != string(payload(i)) {
			t.Fatalf("record %d's data changed while held: %.16q...", i, r.Data)
		}
	}
	last := sink.recs[len(sink.recs)-1]
	if err := rp.AcknowledgeRecord(last.Slot, last.ID, last.End); err != nil {
		t.Fatal(err)
	}
	// The release is applied by the next pull, as for events.
	if _, err := rp.PullRecords(&sink, 1000, 10*time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
		t.Fatalf("PullRecords: %v, want a timeout", err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{payload(0)}).Wait(5 * time.Second); err != nil {
		t.Fatalf("a push after the records were acknowledged: %v", err)
	}
}

// A new name behind what the ring holds reads the log first: events, one
// at a time, then records once the log is read.
func TestPullRecordsAfterTheLog(t *testing.T) {
	const n = 3000
	d, _ := newDriver(t)
	th := createTopic(t, d, "history", `{"ring_size":"64KiB","durability":"async"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(32))
	pushNumbered(t, p, 0, n)
	c := openConsumer(t, th, "late", diaspora.FullDataSelector)
	rp := recordPuller(t, c)
	var sink recordSink
	want, events, records := uint64(0), 0, 0
	for want < n+100 {
		if want == n {
			// The log is read (the archiver may have had all of it): these
			// are in the ring only.
			pushNumbered(t, p, n, n+100)
		}
		sink.reset()
		k, err := rp.PullRecords(&sink, 64, 5*time.Second)
		if errors.Is(err, driver.ErrNotRecords) {
			ev, err := c.Pull().Wait(5 * time.Second)
			if err != nil || ev.ID() != want || ev.Metadata().Dump() != fmt.Sprintf(`{"i":%d}`, want) {
				t.Fatalf("Pull: %d %s, %v; want event %d", ev.ID(), ev.Metadata(), err, want)
			}
			// Acknowledged: unacknowledged zero-copy events of a 64 KiB
			// ring would hold it, and the pushes below fail after their
			// timeout.
			if err := ev.Acknowledge(); err != nil {
				t.Fatal(err)
			}
			want, events = want+1, events+1
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range sink.recs[:k] {
			if r.ID != want || sink.mds[j] != fmt.Sprintf(`{"i":%d}`, want) || len(r.Data) != 100 {
				t.Fatalf("record %d (%s, %d bytes), want event %d", r.ID, sink.mds[j], len(r.Data), want)
			}
			want++
		}
		if last := sink.recs[k-1]; rp.AcknowledgeRecord(last.Slot, last.ID, last.End) != nil {
			t.Fatal("acknowledge")
		}
		records += k
	}
	if events == 0 || records == 0 {
		t.Fatalf("%d events from the log and %d records from the ring: want both", events, records)
	}
}

// faultySink gives no room (out of memory), or faults as a truncated ring
// does, at its k-th MetadataRoom.
type faultySink struct {
	recordSink
	k, calls int
	fault    bool
}

// fakeFault is a memory fault, as SetPanicOnFault makes it.
type fakeFault struct{}

func (fakeFault) Error() string { return "unexpected fault address" }
func (fakeFault) RuntimeError() {}
func (fakeFault) Addr() uintptr { return 1 << 30 }

func (s *faultySink) MetadataRoom(n int) []byte {
	if s.calls++; s.calls == s.k {
		if s.fault {
			panic(fakeFault{})
		}
		return nil
	}
	return s.recordSink.MetadataRoom(n)
}

// A sink out of room, or a fault in the middle of a pass (the reader is
// already past the pass's records), loses no record: those handed are
// handed, and the rest are the next pulls', as events.
func TestPullRecordsLosesNothingToASinkOrAFault(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     int
		fault bool
	}{{"no room for the first", 1, false}, {"no room for the third", 3, false}, {"fault at the first", 1, true}, {"fault at the third", 3, true}} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t)
			th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
			p, _ := th.Producer("p", diaspora.BatchSize(32))
			const n = 20
			for i := range n {
				p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{[]byte("d")})
			}
			if _, err := p.Flush().Wait(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			c, err := th.Consumer("c", diaspora.FullDataSelector)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rp := recordPuller(t, c)
			sink := &faultySink{k: tc.k, fault: tc.fault}
			k, err := rp.PullRecords(sink, 100, time.Second)
			if k != tc.k-1 || len(sink.recs) != k || (k == 0) != (err != nil) {
				t.Fatalf("PullRecords: %d records (%d in the sink), %v; want %d", k, len(sink.recs), err, tc.k-1)
			}
			var got []string
			got = append(got, sink.mds...)
			for len(got) < n {
				var more recordSink
				k, err := rp.PullRecords(&more, 100, time.Second)
				if errors.Is(err, driver.ErrNotRecords) {
					ev, err := c.Pull().Wait(time.Second)
					if err != nil {
						t.Fatalf("Pull after %d: %v", len(got), err)
					}
					got = append(got, ev.Metadata().Dump())
					continue
				}
				if err != nil {
					t.Fatalf("PullRecords after %d: %v", len(got), err)
				}
				got = append(got, more.mds[:k]...)
			}
			for i, md := range got {
				if want := fmt.Sprintf(`{"i":%d}`, i); md != want {
					t.Fatalf("event %d: %s, want %s (all: %v)", i, md, want, got)
				}
			}
		})
	}
}
