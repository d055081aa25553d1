package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // registers "shm"
)

// Every event of the benchmark carries a 16-byte header at the start of its
// data (when it has at least 16 bytes): the sequence number, then a
// CLOCK_MONOTONIC send time in ns, or 0 when the event is not stamped. In
// flat-out runs only the first timed event is stamped (its stamp is the
// start of the timed phase: reading the clock per 64-byte event would cost as
// much as the push); in paced latency runs every event is.
const headerSize = 16

// stamp writes the header of event i into buf (when it has room): its
// sequence number and a send time. In a paced (latency) run it first waits
// for the event's slot, and every event carries its time; in a flat-out run
// only the first timed event does, to keep the clock off the fast path.
func stamp(buf []byte, i, warm int, paceNS, start int64, next *int64) {
	if len(buf) < headerSize {
		return
	}
	var ts int64
	if paceNS > 0 {
		if i >= warm {
			*next += paceNS
			paceUntil(*next)
		}
		ts = mono()
	} else if i == warm {
		ts = start
	}
	putHeader(buf, uint64(i), ts)
}

func putHeader(b []byte, seq uint64, ts int64) {
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(ts))
}

func getHeader(b []byte) (seq uint64, ts int64) {
	return binary.LittleEndian.Uint64(b[0:8]), int64(binary.LittleEndian.Uint64(b[8:16]))
}

// ProducerConfig drives one producer: the `producer` mode and the producer
// process of `pair`.
type ProducerConfig struct {
	Driver        string `json:"driver"`
	DriverConfig  string `json:"driver_config"`
	Topic         string `json:"topic"`
	TopicConfig   string `json:"topic_config,omitempty"` // create the topic with it when missing
	N             int    `json:"n"`                      // timed events
	Warm          int    `json:"warm"`                   // untimed events first
	DataSize      int    `json:"data_size"`
	MetaSize      int    `json:"metadata_size"`
	Batch         int    `json:"batch"` // <= 0: adaptive
	Threads       int    `json:"threads"`
	FlushInterval int    `json:"flush_interval"`
	Window        int    `json:"window"` // pushes in flight (source slots)
	Claim         bool   `json:"claim"`
	PaceNS        int64  `json:"pace_ns"` // > 0: one event every PaceNS, each stamped
	CPUProfile    string `json:"cpuprofile,omitempty"`
	Partitions    []int  `json:"partitions,omitempty"` // push to these in turn (PushTo); none: the selector's choice
}

// ProducerResult is what a producer reports.
type ProducerResult struct {
	Start     int64   `json:"start_ns"` // mono() at the first timed event
	End       int64   `json:"end_ns"`   // mono() when every push completed
	N         int     `json:"n"`
	Seconds   float64 `json:"seconds"`
	EventsSec float64 `json:"events_per_s"`
	MBSec     float64 `json:"mb_per_s"`
	MaxRSS    int64   `json:"max_rss"`
}

func metadataOfSize(n int) diaspora.Metadata {
	if n <= 2 {
		return diaspora.Metadata{}
	}
	if n < 8 {
		n = 8
	}
	return diaspora.MustMetadata(`{"p":"` + strings.Repeat("x", n-8) + `"}`)
}

func parseDriverConfig(s string) (diaspora.Metadata, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return diaspora.Metadata{}, nil
	}
	if !strings.HasPrefix(s, "{") { // a file, as the C++ benchmarks take
		b, err := os.ReadFile(s)
		if err != nil {
			return diaspora.Metadata{}, err
		}
		s = string(b)
	}
	return diaspora.NewMetadata(s)
}

func openTopic(drv, cfg, name, create string) (diaspora.Driver, diaspora.TopicHandle, error) {
	md, err := parseDriverConfig(cfg)
	if err != nil {
		return diaspora.Driver{}, diaspora.TopicHandle{}, fmt.Errorf("driver config: %w", err)
	}
	d, err := diaspora.NewDriver(drv, md)
	if err != nil {
		return d, diaspora.TopicHandle{}, err
	}
	if create != "" {
		ok, err := d.TopicExists(name)
		if err != nil {
			d.Close()
			return d, diaspora.TopicHandle{}, err
		}
		if !ok {
			if err := d.CreateTopic(name, diaspora.MustMetadata(create)); err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
				d.Close()
				return d, diaspora.TopicHandle{}, err
			}
		}
	}
	t, err := d.OpenTopic(name)
	if err != nil {
		d.Close()
	}
	return d, t, err
}

func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpuprofile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpuprofile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func runProducer(cfg ProducerConfig) (res ProducerResult, err error) {
	d, topic, err := openTopic(cfg.Driver, cfg.DriverConfig, cfg.Topic, cfg.TopicConfig)
	if err != nil {
		return res, err
	}
	defer d.Close()
	args := []diaspora.Arg{diaspora.AdaptiveBatchSize}
	if cfg.Batch > 0 {
		args[0] = diaspora.BatchSize(cfg.Batch)
	}
	if cfg.Threads > 0 {
		pool, err := d.MakeThreadPool(diaspora.ThreadCount(cfg.Threads))
		if err != nil {
			return res, err
		}
		args = append(args, pool)
	}
	prod, err := topic.Producer("bench-producer", args...)
	if err != nil {
		return res, err
	}
	defer prod.Close()
	md := metadataOfSize(cfg.MetaSize)
	size := cfg.DataSize
	w := max(cfg.Window, 1)
	arena := make([]byte, w*size)
	for i := range arena {
		arena[i] = byte(i*7 + 1) // fault the source in before timing
	}
	futs := make([]diaspora.Future[diaspora.EventID], w)
	// One DataView per slot, made once: a DataView literal per push would
	// cost an allocation of its own (it escapes into the producer).
	views := make([]diaspora.DataView, w)
	for i := range views {
		views[i] = diaspora.DataView{arena[i*size : (i+1)*size]}
	}
	waitAll := func() error {
		for i, f := range futs {
			if f != nil {
				if _, err := f.Wait(-1); err != nil {
					return err
				}
				futs[i] = nil
			}
		}
		return nil
	}
	stop := func() {}
	defer func() { stop() }()
	total := cfg.Warm + cfg.N
	var next int64
	for i := 0; i < total; i++ {
		if i == cfg.Warm {
			if _, err := prod.Flush().Wait(-1); err != nil {
				return res, err
			}
			if err := waitAll(); err != nil {
				return res, err
			}
			stop = startProfile(cfg.CPUProfile)
			res.Start = mono()
			next = res.Start
		}
		slot := i % w
		if f := futs[slot]; f != nil {
			if _, err := f.Wait(-1); err != nil {
				return res, fmt.Errorf("push %d: %w", i-w, err)
			}
		}
		buf := arena[slot*size : (slot+1)*size]
		stamp(buf, i, cfg.Warm, cfg.PaceNS, res.Start, &next)
		if cfg.Claim {
			c, err := prod.Claim(md, size)
			if err != nil {
				return res, fmt.Errorf("claim %d: %w", i, err)
			}
			// In 256 KiB pieces, as Push copies into the ring and as
			// Producer.Claim advises: Go's copy of a larger block bypasses
			// the cache, and the consumer would read the event from memory.
			dst := c.Bytes()
			for off := 0; off < len(dst); off += 256 << 10 {
				copy(dst[off:], buf[off:min(len(buf), off+256<<10)])
			}
			futs[slot] = c.Commit()
		} else {
			if len(cfg.Partitions) > 0 {
				futs[slot] = prod.PushTo(cfg.Partitions[i%len(cfg.Partitions)], md, views[slot])
			} else {
				futs[slot] = prod.Push(md, views[slot])
			}
		}
		if cfg.FlushInterval > 0 && (i+1)%cfg.FlushInterval == 0 {
			if _, err := prod.Flush().Wait(-1); err != nil {
				return res, err
			}
		}
	}
	if _, err := prod.Flush().Wait(-1); err != nil {
		return res, err
	}
	if err := waitAll(); err != nil {
		return res, err
	}
	res.End = mono()
	stop()
	stop = func() {}
	res.N = cfg.N
	res.Seconds = float64(res.End-res.Start) / 1e9
	res.EventsSec = float64(cfg.N) / res.Seconds
	res.MBSec = float64(cfg.N) * float64(size) / res.Seconds / 1e6
	res.MaxRSS = vmHWM()
	return res, nil
}

// ConsumerConfig drives one consumer: the `consumer` mode and the consumer
// process of `pair`.
type ConsumerConfig struct {
	Driver       string  `json:"driver"`
	DriverConfig string  `json:"driver_config"`
	Topic        string  `json:"topic"`
	Name         string  `json:"name"`
	N            int     `json:"n"`    // timed events
	Warm         int     `json:"warm"` // untimed events first
	Threads      int     `json:"threads"`
	Mode         string  `json:"mode"` // "meta", "copy" (reused buffer), "alloc" (BytesAllocator), "zerocopy", "events" (zero-copy, for range Events)
	Interest     float64 `json:"interest"`
	Selectivity  float64 `json:"selectivity"`
	AckEvery     int     `json:"ack_every"`
	Spin         string  `json:"spin,omitempty"`
	Latency      bool    `json:"latency"`
	Ready        bool    `json:"ready"` // print READY once subscribed
	Timeout      string  `json:"timeout,omitempty"`
	CPUProfile   string  `json:"cpuprofile,omitempty"`
	DataSizeHint int     `json:"data_size_hint"`
	LocalClock   bool    `json:"local_clock"`       // time from this process's first pull, not the producer's stamp
	Targets      []int   `json:"targets,omitempty"` // the partitions to read; none: all
}

// ConsumerResult is what a consumer reports.
type ConsumerResult struct {
	Start      int64          `json:"start_ns"` // the producer's stamp on the first timed event
	End        int64          `json:"end_ns"`   // mono() when the last event arrived
	N          int            `json:"n"`
	Bytes      int64          `json:"bytes"` // data bytes received in the timed phase
	Seconds    float64        `json:"seconds"`
	EventsSec  float64        `json:"events_per_s"`
	MBSec      float64        `json:"mb_per_s"`
	OutOfOrder int            `json:"out_of_order"`
	RSSAt1M    int64          `json:"max_rss_at_1m"`
	RSSEnd     int64          `json:"max_rss_end"`
	Latency    *LatencyResult `json:"latency,omitempty"`
	Checksum   uint64         `json:"checksum"`
}

// LatencyResult holds one-way latency percentiles in nanoseconds.
type LatencyResult struct {
	Count int64   `json:"count"`
	P50   int64   `json:"p50_ns"`
	P90   int64   `json:"p90_ns"`
	P99   int64   `json:"p99_ns"`
	P999  int64   `json:"p99_9_ns"`
	Max   int64   `json:"max_ns"`
	Mean  float64 `json:"mean_ns"`
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 10_000_000_000, 3) }

func latencyOf(h *hdrhistogram.Histogram) *LatencyResult {
	return &LatencyResult{
		Count: h.TotalCount(), P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90),
		P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9), Max: h.Max(), Mean: h.Mean(),
	}
}

// fractionPicker says yes to a fraction f of calls, evenly spread.
func fractionPicker(f float64) func() bool {
	var k float64
	return func() bool {
		a := int64(k * f)
		k++
		return int64(k*f) > a
	}
}

func runConsumer(cfg ConsumerConfig) (res ConsumerResult, err error) {
	d, topic, err := openTopic(cfg.Driver, cfg.DriverConfig, cfg.Topic, "")
	if err != nil {
		return res, err
	}
	defer d.Close()
	var args []diaspora.Arg
	if cfg.Threads > 0 {
		pool, err := d.MakeThreadPool(diaspora.ThreadCount(cfg.Threads))
		if err != nil {
			return res, err
		}
		args = append(args, pool)
	}
	// Positions are written without fsync: the benchmark measures the
	// stream, and a zero-copy consumer acknowledges often to free space.
	extra := map[string]any{}
	if cfg.Driver == "" || cfg.Driver == "shm" {
		extra["ack_sync"] = false
	}
	if cfg.Spin != "" {
		extra["spin"] = cfg.Spin
	}
	if len(extra) > 0 {
		md, err := diaspora.MetadataOf(extra)
		if err != nil {
			return res, err
		}
		args = append(args, md)
	}
	interest, selectivity := cfg.Interest, cfg.Selectivity
	if interest <= 0 && selectivity <= 0 {
		interest, selectivity = 1, 1
	}
	if cfg.Mode != "meta" {
		var sel diaspora.DataSelector
		if interest >= 1 && selectivity >= 1 {
			sel = diaspora.FullDataSelector
		} else {
			pick := fractionPicker(interest)
			sel = func(_ diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
				if !pick() {
					return diaspora.DataDescriptor{}, nil
				}
				n := int(float64(dd.Size())*selectivity + 0.5)
				if n >= dd.Size() {
					return dd, nil
				}
				return dd.SubView(0, n)
			}
		}
		args = append(args, sel)
		switch cfg.Mode {
		case "copy":
			var buf []byte
			view := make(diaspora.DataView, 1) // reused too: no allocation per event
			args = append(args, diaspora.DataAllocator(func(_ diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataView, error) {
				if cap(buf) < dd.Size() {
					buf = make([]byte, dd.Size())
				}
				view[0] = buf[:dd.Size()]
				return view, nil
			}))
		case "alloc":
			args = append(args, diaspora.BytesAllocator)
		case "zerocopy", "events":
		default:
			return res, fmt.Errorf("unknown consumer mode %q", cfg.Mode)
		}
	}
	if len(cfg.Targets) > 0 {
		args = append(args, diaspora.Targets(cfg.Targets))
	}
	name := cfg.Name
	if name == "" {
		name = "bench-consumer"
	}
	cons, err := topic.Consumer(name, args...)
	if err != nil {
		return res, err
	}
	defer cons.Close()
	if cfg.Ready {
		fmt.Println("READY")
	}
	timeout := 60 * time.Second
	if cfg.Timeout != "" {
		if timeout, err = time.ParseDuration(cfg.Timeout); err != nil {
			return res, err
		}
	}
	ackEvery := max(cfg.AckEvery, 1)
	var hist *hdrhistogram.Histogram
	if cfg.Latency {
		hist = newHist()
	}
	stop := func() {}
	defer func() { stop() }()
	total := cfg.Warm + cfg.N
	expect := uint64(0)
	var sum uint64
	// handle takes event k, as the loop of a user's consumer would.
	handle := func(k int, ev diaspora.Event) error {
		var now int64
		if hist != nil {
			now = mono()
		}
		if ev.ID() == diaspora.NoMoreEvents {
			return fmt.Errorf("end of stream after %d of %d events", k, total)
		}
		data := ev.Data()
		if len(data) > 0 && len(data[0]) >= headerSize {
			b := data[0]
			seq, ts := getHeader(b)
			if seq != expect && cfg.Interest >= 1 {
				res.OutOfOrder++
			}
			expect = seq + 1
			if ts != 0 && int(seq) == cfg.Warm && !cfg.LocalClock {
				res.Start = ts
			}
			if hist != nil && ts != 0 && int(seq) >= cfg.Warm {
				hist.RecordValue(max(now-ts, 1))
			}
			sum += uint64(b[len(b)-1]) // touch the last byte, as a reader would
			if k >= cfg.Warm {
				res.Bytes += int64(data.Size())
			}
		} else if k >= cfg.Warm {
			res.Bytes += int64(data.Size())
		}
		if (k+1)%ackEvery == 0 || k == total-1 {
			if err := ev.Acknowledge(); err != nil {
				return fmt.Errorf("acknowledge: %w", err)
			}
		}
		if k+1 == cfg.Warm+1_000_000 {
			res.RSSAt1M = vmHWM()
		}
		if k == cfg.Warm && res.Start == 0 {
			res.Start = mono() // unstamped stream (standalone mode): from the first event
		}
		return nil
	}
	begin := func(k int) {
		if k == cfg.Warm {
			stop = startProfile(cfg.CPUProfile)
			if cfg.LocalClock {
				res.Start = mono()
			}
		}
	}
	if cfg.Mode == "events" {
		// for range Consumer.Events: batches handed out by the driver.
		k := 0
		begin(0)
		for ev, err := range cons.Events(timeout) {
			if err != nil {
				return res, fmt.Errorf("event %d of %d: %w", k, total, err)
			}
			if err := handle(k, ev); err != nil {
				return res, err
			}
			k++
			if k == total {
				break
			}
			begin(k)
		}
		if k < total {
			return res, fmt.Errorf("the Events loop ended after %d of %d events (no event within %v)", k, total, timeout)
		}
	} else {
		for k := 0; k < total; k++ {
			begin(k)
			ev, err := cons.Pull().Wait(timeout)
			if err != nil {
				return res, fmt.Errorf("pull %d of %d: %w", k, total, err)
			}
			if err := handle(k, ev); err != nil {
				return res, err
			}
		}
	}
	res.End = mono()
	stop()
	stop = func() {}
	res.N = cfg.N
	res.Checksum = sum
	res.Seconds = float64(res.End-res.Start) / 1e9
	res.EventsSec = float64(cfg.N) / res.Seconds
	res.MBSec = float64(res.Bytes) / res.Seconds / 1e6
	res.RSSEnd = vmHWM()
	if hist != nil {
		res.Latency = latencyOf(hist)
	}
	return res, nil
}

// Hidden roles: `pair` re-executes this binary with DIASPORA_BENCH_ROLE set
// and the role's config as JSON in DIASPORA_BENCH_CONFIG; the role prints
// "RESULT <json>" on stdout.
const (
	roleEnv   = "DIASPORA_BENCH_ROLE"
	configEnv = "DIASPORA_BENCH_CONFIG"
)

func runRole(role string) int {
	cfgText := os.Getenv(configEnv)
	var out any
	var err error
	switch role {
	case "producer":
		var cfg ProducerConfig
		if err = json.Unmarshal([]byte(cfgText), &cfg); err == nil {
			out, err = runProducer(cfg)
		}
	case "consumer":
		var cfg ConsumerConfig
		if err = json.Unmarshal([]byte(cfgText), &cfg); err == nil {
			out, err = runConsumer(cfg)
		}
	case "streamwriter":
		var cfg StreamConfig
		if err = json.Unmarshal([]byte(cfgText), &cfg); err == nil {
			out, err = runStreamWriter(cfg)
		}
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 1
	}
	b, _ := json.Marshal(out)
	fmt.Printf("RESULT %s\n", b)
	return 0
}
