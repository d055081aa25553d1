package ring

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

func benchRing(b *testing.B, capacity int) (*Ring, string, string) {
	b.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "ringbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	r, err := Create(dir, "b", Options{Capacity: capacity})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r, dir, "b"
}

func BenchmarkClaimCommit1(b *testing.B) {
	r := newTestRing(b, Options{Capacity: 1 << 20})
	var c Claim
	sz := []RecordSize{{Data: 64}}
	for b.Loop() {
		if err := r.Claim(&c, sz, -1); err != nil {
			b.Fatal(err)
		}
		c.Data(0)[0] = 1
		if err := c.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClaimCommitBatch64(b *testing.B) {
	r := newTestRing(b, Options{Capacity: 1 << 20})
	var c Claim
	sz := make([]RecordSize, 64)
	for i := range sz {
		sz[i] = RecordSize{Data: 64}
	}
	for b.Loop() {
		if err := r.Claim(&c, sz, -1); err != nil {
			b.Fatal(err)
		}
		for i := range 64 {
			c.Data(i)[0] = 1
		}
		if err := c.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*64/b.Elapsed().Seconds(), "records/s")
}

// roleBenchRead: args dir, name, count, mode, batched. Reads count
// records: mode 0 touches the first byte, 1 copies the data out, 2 reads
// every line. Record by record (Next), releasing every 64, or (batched)
// every record committed with NextBatch, releasing once a pass, as the
// driver's consumer reads. Then prints "done".
func roleBenchRead() {
	r := openArg()
	n, mode, batched := argInt(2), argInt(3), argInt(4) != 0
	rd, err := r.Attach("bench")
	if err != nil {
		die("attach: %v", err)
	}
	rd.SetSpin(time.Millisecond)
	buf := make([]byte, 1<<20)
	ents := make([]Entry, 256)
	fmt.Println("ready")
	var x byte
	for i := 0; i < n; {
		k := 0
		if batched {
			if k, err = rd.NextBatch(ents[:min(len(ents), n-i)]); err != nil {
				die("next batch at %d: %v", i, err)
			}
		}
		if k == 0 {
			if ents[0], err = rd.Next(30 * time.Second); err != nil {
				die("next %d: %v", i, err)
			}
			k = 1
		}
		for j := range k {
			e := &ents[j]
			switch mode {
			case 1:
				copy(buf, e.Data)
			case 2:
				for j := 0; j < len(e.Data); j += 64 {
					x += e.Data[j]
				}
			default:
				x += e.Data[0]
			}
			if !batched && ((i+j+1)%64 == 0 || len(e.Data) >= 1<<20) {
				rd.Release(e.End)
			}
		}
		if batched {
			rd.Release(ents[k-1].End)
		}
		i += k
	}
	_ = x
	fmt.Println("done")
}

// roleBenchSock: args socket path, total bytes, chunk. Reads total bytes,
// then writes one byte back.
func roleBenchSock() {
	conn, err := net.Dial("unix", arg(0))
	if err != nil {
		die("dial: %v", err)
	}
	total, chunk := argInt(1), argInt(2)
	buf := make([]byte, chunk)
	for total > 0 {
		k, err := conn.Read(buf[:min(chunk, total)])
		if err != nil {
			die("read: %v", err)
		}
		total -= k
	}
	conn.Write([]byte{1})
	conn.Close()
}

func benchStream(b *testing.B, size, batch, capacity int) {
	benchStreamVia(b, size, batch, capacity, false)
}

// benchStreamVia streams records to a reader process, written by Claim and
// a copy per record, or (viaBatch) by WriteBatch.
func benchStreamVia(b *testing.B, size, batch, capacity int, viaBatch bool) {
	r, dir, name := benchRing(b, capacity)
	cp := os.Getenv("RING_BENCH_READ")
	if cp == "" {
		cp = "2"
	}
	batched := "1"
	if os.Getenv("RING_BENCH_NEXT") != "" {
		batched = "0" // record by record, as before NextBatch existed
	}
	ch := startChild(b, "benchread", dir, name, strconv.Itoa(b.N), cp, batched)
	if s := ch.line(b); s != "ready" {
		b.Fatalf("child said %q", s)
	}
	src := make([]byte, size)
	sz := make([]RecordSize, batch)
	for i := range sz {
		sz[i] = RecordSize{Data: size}
	}
	var c Claim
	var bt Batch
	// One copy() of >= 1 MiB takes memmove's non-temporal path and sends the
	// record to DRAM; 256 KiB pieces keep it in cache for the reader.
	chunk := 256 << 10
	if v := os.Getenv("RING_BENCH_CHUNK"); v != "" {
		chunk, _ = strconv.Atoi(v)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for n := 0; n < b.N; {
		k := min(batch, b.N-n)
		if viaBatch {
			// Built in our memory as the driver's stage does, then one
			// claim, one copy, one commit.
			bt.Reset()
			for range k {
				buf := bt.Begin()
				buf = append(buf, src...)
				if err := bt.End(buf, 0); err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := r.WriteBatch(&bt, 30*time.Second, nil); err != nil {
				b.Fatal(err)
			}
			n += k
			continue
		}
		if err := r.Claim(&c, sz[:k], 30*time.Second); err != nil {
			b.Fatal(err)
		}
		for i := range k {
			fillData(c.Data(i), src, chunk)
		}
		if err := c.Commit(); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	if s := ch.line(b); s != "done" {
		b.Fatalf("child said %q", s)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	ch.wait(b)
}

func benchSock(b *testing.B, size, chunk int) {
	dir := b.TempDir()
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	total := b.N * size
	ch := startChild(b, "benchsock", path, strconv.Itoa(total), strconv.Itoa(chunk))
	conn, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	src := make([]byte, chunk)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for total > 0 {
		k, err := conn.Write(src[:min(chunk, total)])
		if err != nil {
			b.Fatal(err)
		}
		total -= k
	}
	io.ReadFull(conn, src[:1])
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	ch.wait(b)
}

func benchCopy(b *testing.B, size int) {
	src := make([]byte, size)
	dst := make([]byte, max(size, 1<<20))
	b.SetBytes(int64(size))
	o := 0
	for b.Loop() {
		if o+size > len(dst) {
			o = 0
		}
		copy(dst[o:], src)
		o += size
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkStream64Ring(b *testing.B)  { benchStream(b, 64, 64, 1<<20) }
func BenchmarkStream64Batch(b *testing.B) { benchStreamVia(b, 64, 64, 1<<20, true) }

// BenchmarkStream64Stage writes batches of 256, the most a streaming
// producer's stage holds (driver.stageEvents), into a 64 MiB ring (the
// default ring_size).
func BenchmarkStream64Stage(b *testing.B)  { benchStreamVia(b, 64, 256, 64<<20, true) }
func BenchmarkStream64Socket(b *testing.B) { benchSock(b, 64, 64*64) }
func BenchmarkStream64Copy(b *testing.B)   { benchCopy(b, 64) }
func BenchmarkStream1MRing(b *testing.B)   { benchStream(b, 1<<20, 1, 8<<20) }
func BenchmarkStream1MSocket(b *testing.B) { benchSock(b, 1<<20, 1<<20) }
func BenchmarkStream1MCopy(b *testing.B)   { benchCopy(b, 1<<20) }

// rolePong: args dir, ping ring, pong ring. Echoes every record of ping
// into pong, spinning, until end of stream.
func rolePong() {
	ping := openArg()
	pong, err := Open(arg(0), arg(2), shm.Trust{})
	if err != nil {
		die("open: %v", err)
	}
	rd, err := ping.Attach("pong")
	if err != nil {
		die("attach: %v", err)
	}
	rd.SetSpin(time.Hour)
	fmt.Println("ready")
	var c Claim
	sz := []RecordSize{{Data: 32}}
	for {
		e, err := rd.Next(-1)
		if err != nil {
			return
		}
		rd.Release(e.End)
		if err := pong.Claim(&c, sz, -1); err != nil {
			die("claim: %v", err)
		}
		if err := c.Commit(); err != nil {
			die("commit: %v", err)
		}
	}
}

// BenchmarkLatencySpin measures one-way latency as half the median
// round trip of a 32-byte ping-pong between two spinning processes.
func BenchmarkLatencySpin(b *testing.B) {
	ping, dir, _ := benchRing(b, 1<<20)
	pong, err := Create(dir, "pong", Options{Capacity: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer pong.Close()
	rd, err := pong.Attach("ping")
	if err != nil {
		b.Fatal(err)
	}
	rd.SetSpin(time.Hour)
	ch := startChild(b, "pong", dir, "b", "pong")
	if s := ch.line(b); s != "ready" {
		b.Fatalf("child said %q", s)
	}
	var c Claim
	sz := []RecordSize{{Data: 32}}
	rtt := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := ping.Claim(&c, sz, -1); err != nil {
			b.Fatal(err)
		}
		c.Commit()
		e, err := rd.Next(10 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t0))
		rd.Release(e.End)
	}
	b.StopTimer()
	ping.MarkComplete()
	ch.wait(b)
	slices.Sort(rtt)
	b.ReportMetric(float64(rtt[len(rtt)/2].Nanoseconds())/2, "ns/oneway-p50")
	b.ReportMetric(float64(rtt[len(rtt)*99/100].Nanoseconds())/2, "ns/oneway-p99")
}

// fillData copies src into dst in pieces of chunk bytes (0: one copy).
func fillData(dst, src []byte, chunk int) {
	if chunk <= 0 || chunk >= len(dst) {
		copy(dst, src)
		return
	}
	for o := 0; o < len(dst); o += chunk {
		copy(dst[o:min(o+chunk, len(dst))], src[o:])
	}
}
