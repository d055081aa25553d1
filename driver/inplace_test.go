package driver_test

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

// Events read in place (default metadata, data in the ring or none) hold
// no pointer of their own: what the user keeps of them (the event, its
// Metadata, its DataView) keeps their memory alive. Kept across many
// blocks and collections, every one reads back as written.
func TestInPlaceEventsKeptAcrossBlocksAndCollections(t *testing.T) {
	for _, mode := range []string{"meta", "zerocopy"} {
		t.Run(mode, func(t *testing.T) {
			d, _ := newDriver(t)
			th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64MiB","num_partitions":2}`)
			p, _ := th.Producer("p", diaspora.BatchSize(64))
			const n = 3000 // about 15 blocks of 16 KiB
			for i := range n {
				md := diaspora.MustMetadata(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("p", i%40)))
				if i%7 == 0 {
					md = diaspora.MustMetadata(`{}`)
				}
				p.PushTo(i%2, md, diaspora.DataView{[]byte(fmt.Sprintf("data-%d", i))})
			}
			if _, err := p.Flush().Wait(5 * time.Second); err != nil {
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
			var evs []diaspora.Event
			var mds []diaspora.Metadata
			var views []diaspora.DataView
			for range n {
				ev, err := c.Pull().Wait(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				evs, mds, views = append(evs, ev), append(mds, ev.Metadata()), append(views, ev.Data())
			}
			for range 3 {
				runtime.GC()
			}
			for k, ev := range evs {
				var m struct{ I *int }
				if err := ev.Metadata().Decode(&m); err != nil {
					t.Fatalf("event %d: metadata %s: %v", k, ev.Metadata(), err)
				}
				i := -1
				if m.I != nil {
					i = *m.I
				} else if ev.Metadata().Dump() != "{}" {
					t.Fatalf("event %d: metadata %s", k, ev.Metadata())
				}
				if mds[k].Dump() != ev.Metadata().Dump() {
					t.Fatalf("event %d: kept Metadata %s, now %s", k, mds[k], ev.Metadata())
				}
				var part struct{ ID int }
				if err := ev.Partition().Decode(&part); err != nil || (i >= 0 && part.ID != i%2) ||
					ev.Partition().Dump() != th.Partitions()[part.ID].Dump() {
					t.Fatalf("event %d (i %d): partition %s, %v", k, i, ev.Partition(), err)
				}
				if mode == "meta" {
					if ev.Data() != nil {
						t.Fatalf("event %d of a metadata-only consumer has data %q", k, ev.Data())
					}
					continue
				}
				got := string(views[k][0])
				if !strings.HasPrefix(got, "data-") || (i >= 0 && got != fmt.Sprintf("data-%d", i)) {
					t.Fatalf("event %d (i %d): data %q", k, i, got)
				}
			}
			for _, ev := range evs {
				if err := ev.Acknowledge(); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			if err := evs[0].Acknowledge(); err == nil {
				t.Fatal("an acknowledgement after Close succeeded")
			}
		})
	}
}

// Metadata damaged in the ring (written there by something other than
// the producer's serializer) is an error of the pull that names the
// event, and the event is not skipped: the events before it arrive, and
// the pulls after it fail the same way, never handing out what follows.
func TestDamagedMetadataInTheRingIsAnErrorNotASkip(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"ok":0}`), nil).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	paths := ringPaths(t, opts)
	if len(paths) != 1 {
		t.Fatalf("rings %v", paths)
	}
	r, err := ring.Open(filepath.Dir(paths[0]), filepath.Base(paths[0]), shm.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cl ring.Claim
	bad := []byte("{\"two\nlines\"}")
	if err := r.Claim(&cl, []ring.RecordSize{{Meta: len(bad), Data: 4}}, time.Second); err != nil {
		t.Fatal(err)
	}
	copy(cl.Meta(0), bad)
	copy(cl.Data(0), "data")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"ok":2}`), nil).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]diaspora.Arg{nil, {diaspora.FullDataSelector}} {
		c, err := th.Consumer(fmt.Sprintf("c%d", len(args)), args...)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := c.Pull().Wait(time.Second)
		if err != nil || ev.Metadata().Dump() != `{"ok":0}` {
			t.Fatalf("first event %v, %v", ev.Metadata(), err)
		}
		for range 2 {
			ev, err := c.Pull().Wait(time.Second)
			if err == nil || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "not skipped") {
				t.Fatalf("pull of the damaged event: %v, %v; want an error naming event 1", ev.Metadata(), err)
			}
		}
		c.Close()
	}
}

// A record with no metadata at all (not even {}, which in-place events
// keep as no bytes) is refused as damaged metadata, by every kind of
// consumer: it was delivered as {} by the first version of in-place events.
func TestEmptyMetadataInTheRingIsAnError(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"ok":0}`), diaspora.DataView{[]byte("zero")}).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	paths := ringPaths(t, opts)
	r, err := ring.Open(filepath.Dir(paths[0]), filepath.Base(paths[0]), shm.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cl ring.Claim
	if err := r.Claim(&cl, []ring.RecordSize{{Meta: 0, Data: 4}}, time.Second); err != nil {
		t.Fatal(err)
	}
	copy(cl.Data(0), "data")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	alloc := diaspora.DataAllocator(func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataView, error) {
		return diaspora.DataView{make([]byte, d.Size())}, nil
	})
	for i, args := range [][]diaspora.Arg{nil, {diaspora.FullDataSelector}, {diaspora.FullDataSelector, alloc}} {
		c, err := th.Consumer(fmt.Sprintf("c%d", i), args...)
		if err != nil {
			t.Fatal(err)
		}
		if ev, err := c.Pull().Wait(time.Second); err != nil || ev.ID() != 0 {
			t.Fatalf("consumer %d: first pull %v, %v", i, ev.ID(), err)
		}
		for range 2 {
			ev, err := c.Pull().Wait(time.Second)
			if err == nil || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "0 bytes") {
				t.Fatalf("consumer %d: the record with no metadata: %s, %v; want an error naming event 1", i, ev.Metadata(), err)
			}
		}
		c.Close()
	}
}
