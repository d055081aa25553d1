package driver_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// perEvent reports allocations and bytes per event as fractions (testing's
// allocs/op is a whole number, and blocks carved for 64 or 256 events show
// as 0); call it with the stats read where the timed loop began.
func perEvent(b *testing.B, before *runtime.MemStats) { perEventBut(b, before, 0, 0) }

// perEventBut is perEvent leaving out allocations made by untimed work.
func perEventBut(b *testing.B, before *runtime.MemStats, mallocs, bytes uint64) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs-mallocs)/float64(b.N), "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc-bytes)/float64(b.N), "B/event")
}

func memStats() *runtime.MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return &m
}

// BenchmarkPush64 measures the producer path alone: validate, select,
// serialize, claim, copy, commit, for 64-byte events with small metadata.
func BenchmarkPush64(b *testing.B) {
	for _, batch := range []diaspora.BatchSize{diaspora.AdaptiveBatchSize, 64} {
		b.Run("batch="+batch.String(), func(b *testing.B) {
			d, _ := newDriver(b)
			th := createTopic(b, d, "push", `{"ring_size":"64MiB","durability":"none"}`)
			p, err := th.Producer("p", batch)
			if err != nil {
				b.Fatal(err)
			}
			md := diaspora.MustMetadata(`{"x":1}`)
			data := diaspora.DataView{make([]byte, 64)}
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			m0 := memStats()
			for i := 0; i < b.N; i++ {
				p.Push(md, data)
			}
			if _, err := p.Flush().Wait(-1); err != nil {
				b.Fatal(err)
			}
			perEvent(b, m0)
		})
	}
}

// drainInRounds runs a consumer benchmark over events already in a 1 GiB
// ring: it fills the ring with up to 4 M events at a time (untimed; the
// ring holds 9 M), then times drain(n), which must take those n events and
// acknowledge the last, and reports allocations per drained event.
func drainInRounds(b *testing.B, p diaspora.Producer, drain func(n int)) {
	md := diaspora.MustMetadata(`{"x":1}`)
	data := diaspora.DataView{make([]byte, 64)}
	b.SetBytes(64)
	b.ReportAllocs()
	var m0 *runtime.MemStats
	var fillMallocs, fillBytes uint64 // of the fills after the first
	for done := 0; done < b.N; {
		round := min(b.N-done, 4<<20)
		b.StopTimer()
		before := memStats()
		for range round {
			p.Push(md, data)
		}
		if _, err := p.Flush().Wait(-1); err != nil {
			b.Fatal(err)
		}
		if m0 == nil {
			b.ResetTimer()
			m0 = memStats()
		} else {
			after := memStats()
			fillMallocs += after.Mallocs - before.Mallocs
			fillBytes += after.TotalAlloc - before.TotalAlloc
		}
		b.StartTimer()
		drain(round)
		done += round
	}
	perEventBut(b, m0, fillMallocs, fillBytes)
}

// BenchmarkPull64 measures the consumer path alone over events already in
// the ring: metadata only, copied data, and zero-copy data.
func BenchmarkPull64(b *testing.B) {
	for _, mode := range []string{"meta", "copy", "zerocopy"} {
		b.Run(mode, func(b *testing.B) {
			d, _ := newDriver(b)
			th := createTopic(b, d, "pull", `{"ring_size":"1GiB","durability":"none"}`)
			p, _ := th.Producer("p", diaspora.BatchSize(256))
			var args []diaspora.Arg
			switch mode {
			case "copy":
				args = append(args, diaspora.FullDataSelector, diaspora.BytesAllocator)
			case "zerocopy":
				args = append(args, diaspora.FullDataSelector)
			}
			args = append(args, diaspora.MustMetadata(`{"ack_sync":false}`))
			c, err := th.Consumer("c", args...)
			if err != nil {
				b.Fatal(err)
			}
			drainInRounds(b, p, func(n int) {
				var ev diaspora.Event
				for i := range n {
					ev, err = c.Pull().Wait(time.Second)
					if err != nil {
						b.Fatal(err)
					}
					if mode == "zerocopy" && i%4096 == 4095 {
						ev.Acknowledge()
					}
				}
				ev.Acknowledge() // frees the ring for the next round
			})
		})
	}
}

// BenchmarkClaim64 measures the zero-copy produce path: Claim, write in
// place, Commit.
func BenchmarkClaim64(b *testing.B) {
	d, _ := newDriver(b)
	th := createTopic(b, d, "claim", `{"ring_size":"64MiB","durability":"none"}`)
	p, err := th.Producer("p")
	if err != nil {
		b.Fatal(err)
	}
	md := diaspora.MustMetadata(`{"x":1}`)
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := p.Claim(md, 64)
		if err != nil {
			b.Fatal(err)
		}
		c.Bytes()[0] = byte(i)
		if _, err := c.Commit().Wait(-1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvents64 is the batch path: a BatchSize(256) producer, and a
// zero-copy consumer reading with for range Events.
func BenchmarkEvents64(b *testing.B) {
	d, _ := newDriver(b)
	th := createTopic(b, d, "events", `{"ring_size":"1GiB","durability":"none"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(256))
	c, err := th.Consumer("c", diaspora.FullDataSelector, diaspora.MustMetadata(`{"ack_sync":false}`))
	if err != nil {
		b.Fatal(err)
	}
	drainInRounds(b, p, func(n int) {
		k := 0
		var last diaspora.Event
		for ev, err := range c.Events(time.Second) {
			if err != nil {
				b.Fatal(err)
			}
			last = ev
			if k++; k == n {
				break
			}
		}
		if k != n {
			b.Fatalf("Events gave %d of %d events", k, n)
		}
		last.Acknowledge() // frees the ring for the next round
	})
}
