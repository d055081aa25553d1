package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// The baselines move the same events (same sizes, same 16-byte header, the
// same source arena of slots) by other means:
//   - "unix" and "pipe": a child process writes length-prefixed frames through
//     a 64 KiB bufio.Writer into a Unix stream socket or a pipe; this process
//     reads them through a 64 KiB bufio.Reader into one reused buffer.
//   - "chan": a goroutine sends batches of events ([]byte spans of the arena)
//     over a buffered channel; the receiving goroutine copies each event out.
//   - "copy": copy() of each event from a 64 MiB source into the next slot of
//     a ring-sized destination, in one goroutine: the memory work of a
//     producer that copies each event into a ring once.
//   - "disk": writes of the events to a file where durable topics keep their
//     logs, fdatasync'd at the archiver's interval: the bound of durable rows.

// StreamConfig drives the writer child of the unix and pipe baselines. The
// stream is inherited as file descriptor 3.
type StreamConfig struct {
	N        int   `json:"n"`
	Warm     int   `json:"warm"`
	DataSize int   `json:"data_size"`
	Window   int   `json:"window"`
	PaceNS   int64 `json:"pace_ns"`
}

func runStreamWriter(cfg StreamConfig) (ProducerResult, error) {
	var res ProducerResult
	f := os.NewFile(3, "stream")
	if f == nil {
		return res, fmt.Errorf("no stream on fd 3")
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 64<<10)
	size := cfg.DataSize
	w := max(cfg.Window, 1)
	arena := make([]byte, w*size)
	for i := range arena {
		arena[i] = byte(i*7 + 1)
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(size))
	total := cfg.Warm + cfg.N
	var next int64
	for i := 0; i < total; i++ {
		if i == cfg.Warm {
			if err := bw.Flush(); err != nil {
				return res, err
			}
			res.Start = mono()
			next = res.Start
		}
		slot := i % w
		buf := arena[slot*size : (slot+1)*size]
		stamp(buf, i, cfg.Warm, cfg.PaceNS, res.Start, &next)
		bw.Write(hdr[:])
		if _, err := bw.Write(buf); err != nil {
			return res, err
		}
		if cfg.PaceNS > 0 {
			if err := bw.Flush(); err != nil {
				return res, err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return res, err
	}
	res.End = mono()
	res.N = cfg.N
	res.Seconds = float64(res.End-res.Start) / 1e9
	res.EventsSec = float64(cfg.N) / res.Seconds
	res.MBSec = float64(cfg.N) * float64(size) / res.Seconds / 1e6
	return res, nil
}

// readStream is the parent's side of the unix and pipe baselines.
func readStream(r io.Reader, cfg StreamConfig, latency bool) (ConsumerResult, error) {
	var res ConsumerResult
	br := bufio.NewReaderSize(r, 64<<10)
	buf := make([]byte, cfg.DataSize)
	var hist *hdrhistogram.Histogram
	if latency {
		hist = newHist()
	}
	var hdr [4]byte
	expect := uint64(0)
	var sum uint64
	total := cfg.Warm + cfg.N
	for k := 0; k < total; k++ {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return res, fmt.Errorf("frame %d: %w", k, err)
		}
		n := int(binary.LittleEndian.Uint32(hdr[:]))
		if n > len(buf) {
			buf = make([]byte, n)
		}
		b := buf[:n]
		if _, err := io.ReadFull(br, b); err != nil {
			return res, fmt.Errorf("frame %d: %w", k, err)
		}
		var now int64
		if hist != nil {
			now = mono()
		}
		if n >= headerSize {
			seq, ts := getHeader(b)
			if seq != expect {
				res.OutOfOrder++
			}
			expect = seq + 1
			if ts != 0 && int(seq) == cfg.Warm {
				res.Start = ts
			}
			if hist != nil && ts != 0 && int(seq) >= cfg.Warm {
				hist.RecordValue(max(now-ts, 1))
			}
			sum += uint64(b[n-1])
		}
		if k >= cfg.Warm {
			res.Bytes += int64(n)
		}
	}
	res.End = mono()
	res.finish(cfg.N, sum, hist)
	return res, nil
}

func (res *ConsumerResult) finish(n int, sum uint64, hist *hdrhistogram.Histogram) {
	res.N = n
	res.Checksum = sum
	res.Seconds = float64(res.End-res.Start) / 1e9
	res.EventsSec = float64(n) / res.Seconds
	res.MBSec = float64(res.Bytes) / res.Seconds / 1e6
	res.RSSEnd = vmHWM()
	if hist != nil {
		res.Latency = latencyOf(hist)
	}
}

// runChan is the in-process channel baseline: batches of batch events.
func runChan(n, warm, size, batch, window int, paceNS int64) (ConsumerResult, error) {
	const depth = 8
	batch = max(batch, 1)
	if paceNS > 0 {
		batch = 1
	}
	w := max(window, (depth+3)*batch)
	w = (w + batch - 1) / batch * batch
	arena := make([]byte, w*size)
	for i := range arena {
		arena[i] = byte(i*7 + 1)
	}
	type msg struct {
		b     []byte // count events of size bytes
		count int
	}
	ch := make(chan msg, depth)
	total := warm + n
	go func() {
		var next int64
		for i := 0; i < total; {
			cnt := min(batch, total-i, w-i%w)
			if i <= warm && warm < i+cnt && i != warm {
				cnt = warm - i // the first timed event starts a batch
			}
			slot := i % w
			span := arena[slot*size : (slot+cnt)*size]
			if size >= headerSize {
				for j := 0; j < cnt; j++ {
					var ts int64
					if paceNS > 0 {
						if i+j == warm {
							next = mono()
						}
						if i+j >= warm {
							next += paceNS
							paceUntil(next)
						}
						ts = mono()
					} else if i+j == warm {
						ts = mono()
					}
					putHeader(span[j*size:], uint64(i+j), ts)
				}
			}
			ch <- msg{span, cnt}
			i += cnt
		}
		close(ch)
	}()
	var res ConsumerResult
	var hist *hdrhistogram.Histogram
	if paceNS > 0 {
		hist = newHist()
	}
	dst := make([]byte, size)
	var sum uint64
	expect := uint64(0)
	k := 0
	for m := range ch {
		var now int64
		if hist != nil {
			now = mono()
		}
		for j := 0; j < m.count; j++ {
			copy(dst, m.b[j*size:(j+1)*size])
			if size >= headerSize {
				seq, ts := getHeader(dst)
				if seq != expect {
					res.OutOfOrder++
				}
				expect = seq + 1
				if ts != 0 && int(seq) == warm {
					res.Start = ts
				}
				if hist != nil && ts != 0 && int(seq) >= warm {
					hist.RecordValue(max(now-ts, 1))
				}
				sum += uint64(dst[size-1])
			}
			if k >= warm {
				res.Bytes += int64(size)
			}
			k++
		}
	}
	res.End = mono()
	if k != total {
		return res, fmt.Errorf("chan: %d of %d events", k, total)
	}
	res.finish(n, sum, hist)
	return res, nil
}

// copySource is the 64 MiB source of the copy() baseline, and copyDest
// its ring-sized destination, allocated and faulted in once.
var copySource, copyDest []byte

// runCopy copies n events of size bytes, each from the next slot of a 64 MiB
// source (so a 1 MiB event is not cache-resident) into the next slot of a
// destination as large as the topics' rings: the memory work of a producer
// that copies each event into a ring once, and nothing else.
func runCopy(n, warm, size, ringBytes int) ConsumerResult {
	if copySource == nil {
		copySource = make([]byte, 64<<20)
		for i := range copySource {
			copySource[i] = byte(i*7 + 1)
		}
	}
	if len(copyDest) != max(ringBytes, size) {
		copyDest = make([]byte, max(ringBytes, size))
		for i := 0; i < len(copyDest); i += 4096 {
			copyDest[i] = 1
		}
	}
	slots := max(len(copySource)/size, 1)
	dslots := max(len(copyDest)/size, 1)
	var res ConsumerResult
	var sum uint64
	for k := 0; k < warm+n; k++ {
		if k == warm {
			res.Start = mono()
		}
		s, d := k%slots, k%dslots
		dst := copyDest[d*size : (d+1)*size]
		copy(dst, copySource[s*size:(s+1)*size])
		sum += uint64(dst[size-1])
		if k >= warm {
			res.Bytes += int64(size)
		}
	}
	res.End = mono()
	res.finish(n, sum, nil)
	return res
}

// errNoLatency: a baseline without a latency run.
var errNoLatency = errors.New("no latency run for this baseline")

// diskSync is the archiver's fsync interval (segment.Options.SyncInterval).
const diskSync = 100 * time.Millisecond

// runDisk writes n events of size bytes after warm ones to a new file in
// dir (where durable topics keep their logs in this benchmark), with an
// fdatasync every diskSync and one at the end, as the archiver of an async
// topic does: what the disk can take, the bound of durable rows. Events
// below 64 KiB go through a 1 MiB buffer (the archiver writes batches of
// them), larger ones with a write each.
func runDisk(n, warm, size int, dir string) (ConsumerResult, error) {
	var res ConsumerResult
	// A few seconds of the disk at most: 256 MiB, the warm-up 16 MiB.
	n = min(n, max((256<<20)/size, 64))
	warm = min(warm, max((16<<20)/size, 4))
	if copySource == nil {
		copySource = make([]byte, 64<<20)
		for i := range copySource {
			copySource[i] = byte(i*7 + 1)
		}
	}
	f, err := os.CreateTemp(dir, "diaspora-bench-disk-")
	if err != nil {
		return res, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var w io.Writer = f
	var bw *bufio.Writer
	if size < 64<<10 {
		bw = bufio.NewWriterSize(f, 1<<20)
		w = bw
	}
	slots := max(len(copySource)/size, 1)
	lastSync := time.Now()
	sync := func() error {
		if bw != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		lastSync = time.Now()
		return unix.Fdatasync(int(f.Fd()))
	}
	for k := 0; k < warm+n; k++ {
		if k == warm {
			if err := sync(); err != nil {
				return res, err
			}
			res.Start = mono()
		}
		s := k % slots
		if _, err := w.Write(copySource[s*size : (s+1)*size]); err != nil {
			return res, err
		}
		if k >= warm {
			res.Bytes += int64(size)
		}
		if (size >= 64<<10 || k%64 == 0) && time.Since(lastSync) >= diskSync {
			if err := sync(); err != nil {
				return res, err
			}
		}
	}
	if err := sync(); err != nil {
		return res, err
	}
	res.End = mono()
	res.finish(n, 0, nil)
	return res, nil
}
