package driver_test

import (
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

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
			for i := 0; i < b.N; i++ {
				p.Push(md, data)
			}
			if _, err := p.Flush().Wait(-1); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkPull64 measures the consumer path alone over events already in
// the ring: metadata only, copied data, and zero-copy data.
func BenchmarkPull64(b *testing.B) {
	for _, mode := range []string{"meta", "copy", "zerocopy"} {
		b.Run(mode, func(b *testing.B) {
			d, _ := newDriver(b)
			th := createTopic(b, d, "pull", `{"ring_size":"1GiB","durability":"none"}`)
			p, _ := th.Producer("p", diaspora.BatchSize(256))
			md := diaspora.MustMetadata(`{"x":1}`)
			data := diaspora.DataView{make([]byte, 64)}
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
			for i := 0; i < b.N; i++ {
				p.Push(md, data)
			}
			p.Flush().Wait(-1)
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev, err := c.Pull().Wait(time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "zerocopy" && i%4096 == 4095 {
					ev.Acknowledge()
				}
			}
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
