// Command bench measures diaspora-shm against baselines.
//
//	go run ./bench                 # pair --quick: two processes, a temp topic, a minute at most
//	go run ./bench pair            # the full sweep: 64 B .. 1 MiB, none/async/sync, 3 runs each
//	go run ./bench producer -n 1000000 -s 64 -b 1024
//	go run ./bench consumer -n 1000000 -i 0.5 -s 0.25
//	go run ./bench lang            # C producer and Python consumers against Go and a socket
//	go run ./bench forward         # shm -> kafka (kfake) through diaspora-shmctl forward
//
// `producer` and `consumer` take the flags of the C++ project's
// diaspora-producer-benchmark and diaspora-consumer-benchmark. `pair` starts a
// producer process and a consumer process (this binary, re-executed in a
// hidden role) on one topic and reports end-to-end throughput and one-way
// latency, beside the same events over a Unix socket, a pipe, a Go channel and
// plain copy(); it prints a table and writes a JSON file and a PNG chart.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/diaspora-shm/diaspora/driver"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"pair", "--quick"}
	}
	var err error
	switch args[0] {
	case "producer":
		err = producerCmd(args[1:])
	case "consumer":
		err = consumerCmd(args[1:])
	case "pair":
		err = pairCmd(args[1:])
	case "lang":
		err = langCmd(args[1:])
	case "forward":
		err = forwardCmd(args[1:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown mode %q\n", args[0])
		usage()
		os.Exit(2)
	}
	if err != nil {
		if err == pflag.ErrHelp {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: bench [producer|consumer|pair] [flags]   (no arguments: pair --quick)
  producer  push events into a topic (flags of diaspora-producer-benchmark)
  consumer  pull events from a topic (flags of diaspora-consumer-benchmark)
  pair      producer and consumer processes, plus baselines; table, JSON, PNG
  lang      the C library and the Python package against their baselines
  forward   diaspora-shmctl forward, shm to kafka (kfake), beside the shm stream
run "bench MODE --help" for the flags of a mode`)
}

func parseSizeFlag(s string) (int64, error) { return driver.ParseSize(s) }

func producerCmd(args []string) error {
	fs := pflag.NewFlagSet("producer", pflag.ContinueOnError)
	cfg := ProducerConfig{}
	fs.StringVarP(&cfg.Driver, "driver", "d", "shm", "driver name")
	fs.StringVarP(&cfg.Topic, "topic", "t", "bench", "topic name (created when missing)")
	fs.StringVarP(&cfg.DriverConfig, "driver-config", "c", "", "driver config: JSON text or a JSON file")
	fs.IntVarP(&cfg.N, "num-events", "n", 1_000_000, "number of events")
	size := fs.StringP("data-size", "s", "64", "data size of each event (64, 4KiB, 1MiB)")
	fs.IntVarP(&cfg.MetaSize, "metadata-size", "m", 2, "metadata size in bytes (2 is {})")
	fs.IntVarP(&cfg.Batch, "batch-size", "b", 0, "batch size; 0 is adaptive")
	fs.IntVarP(&cfg.Threads, "num-threads", "p", 0, "threads of the producer's pool; 0 runs inline")
	fs.IntVarP(&cfg.FlushInterval, "flush-interval", "f", 0, "flush every this many events; 0: only at the end")
	fs.IntVar(&cfg.Window, "in-flight", 0, "pushes in flight (buffers); 0: 64MiB worth, 16..65536")
	fs.IntVar(&cfg.Warm, "warm", 0, "untimed events pushed first")
	fs.BoolVar(&cfg.Claim, "claim", false, "write events with Claim/Commit instead of Push")
	dur := fs.String("durability", "async", "durability of the topic when it is created: none, async, sync")
	ring := fs.String("ring-size", "64MiB", "ring size of the topic when it is created")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the timed phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n, err := parseSizeFlag(*size)
	if err != nil {
		return err
	}
	cfg.DataSize = int(n)
	if cfg.Window == 0 {
		rb, err := parseSizeFlag(*ring)
		if err != nil {
			return err
		}
		cfg.Window = window(max(cfg.DataSize, 1), int(rb))
	}
	cfg.TopicConfig = fmt.Sprintf(`{"num_partitions":1,"ring_size":%q,"durability":%q}`, *ring, *dur)
	res, err := runProducer(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("total time: %.3f s\nevents/s:   %.0f\nMB/s:       %.1f\n", res.Seconds, res.EventsSec, res.MBSec)
	return nil
}

func consumerCmd(args []string) error {
	fs := pflag.NewFlagSet("consumer", pflag.ContinueOnError)
	cfg := ConsumerConfig{}
	fs.StringVarP(&cfg.Driver, "driver", "d", "shm", "driver name")
	fs.StringVarP(&cfg.Topic, "topic", "t", "bench", "topic name")
	fs.StringVarP(&cfg.DriverConfig, "driver-config", "c", "", "driver config: JSON text or a JSON file")
	fs.IntVarP(&cfg.N, "num-events", "n", 1_000_000, "number of events")
	fs.IntVarP(&cfg.Threads, "num-threads", "p", 0, "threads of the consumer's pool")
	fs.Float64VarP(&cfg.Interest, "data-interest", "i", 1, "fraction of events whose data is selected")
	fs.Float64VarP(&cfg.Selectivity, "data-selectivity", "s", 1, "fraction of each selected event's bytes (a SubView)")
	zc := fs.Bool("zero-copy", false, "no allocator: Data() points into the ring")
	meta := fs.Bool("metadata-only", false, "no data selector at all")
	fs.StringVar(&cfg.Name, "name", "bench-consumer", "consumer name")
	fs.IntVar(&cfg.AckEvery, "ack-every", 4096, "acknowledge every this many events")
	fs.StringVar(&cfg.Spin, "spin", "", "how long Pull spins before sleeping (driver default 50us)")
	fs.StringVar(&cfg.Timeout, "timeout", "10s", "give up when no event comes for this long")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.LocalClock = true
	cfg.Mode = "alloc"
	if *zc {
		cfg.Mode = "zerocopy"
	}
	if *meta {
		cfg.Mode = "meta"
	}
	if cfg.Interest <= 0 || cfg.Selectivity <= 0 {
		cfg.Mode = "meta"
	}
	res, err := runConsumer(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("total time: %.3f s\nevents/s:   %.0f\nMB/s:       %.1f\nmax RSS:    %.1f MiB\n",
		res.Seconds, res.EventsSec, res.MBSec, float64(res.RSSEnd)/(1<<20))
	return nil
}

func pairCmd(args []string) error {
	fs := pflag.NewFlagSet("pair", pflag.ContinueOnError)
	var opt PairOptions
	fs.BoolVar(&opt.Quick, "quick", false, "under a minute: fewer events, 64 B and 1 MiB, durability none and async")
	sizes := fs.StringSlice("sizes", nil, "event sizes (default 64,4KiB,64KiB,1MiB; quick: 64,1MiB)")
	fs.StringSliceVar(&opt.Durability, "durability", nil, "durability levels (default none,async,sync; quick: none,async)")
	fs.IntVar(&opt.Reps, "reps", 3, "runs of each case, interleaved; medians are quoted")
	fs.Float64Var(&opt.Scale, "scale", 1, "multiply the number of events")
	noLat := fs.Bool("no-latency", false, "skip the paced latency runs")
	fs.IntVar(&opt.Long, "long", -1, "events of the consumer-memory run (default 10M; quick: 0, none)")
	fs.BoolVar(&opt.Quad, "quad", true, "run the 2x2 case: 4 partitions, 2 producer processes -> 2 consumer processes")
	fs.IntVar(&opt.AckEvery, "ack-every", 4096, "consumers acknowledge every this many events")
	fs.StringVar(&opt.RingSize, "ring-size", "64MiB", "ring size of the topics")
	fs.StringVar(&opt.Out, "out", "", "directory of the JSON and PNG (default: $TMPDIR/diaspora-bench for --quick, else bench/results when run from the module root, else .)")
	fs.StringVar(&opt.ProfileDir, "profile-dir", "", "CPU profiles of every producer and consumer process go here")
	fs.StringVar(&opt.Only, "only", "", "run only the cases whose name matches this regexp")
	fs.BoolVar(&opt.NoChart, "no-chart", false, "no PNG")
	fs.BoolVar(&opt.WaitQuiet, "wait-quiet", false, "wait (up to 5 min) for a 1-minute load average below 1.0")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opt.Latency = !*noLat
	for _, s := range *sizes {
		n, err := parseSizeFlag(s)
		if err != nil {
			return err
		}
		if n < headerSize {
			return fmt.Errorf("event size %d: at least %d bytes (the sequence and time header)", n, headerSize)
		}
		opt.Sizes = append(opt.Sizes, int(n))
	}
	if len(opt.Sizes) == 0 {
		opt.Sizes = defaultSizes(opt.Quick)
	}
	if len(opt.Durability) == 0 {
		opt.Durability = defaultDurability(opt.Quick)
	}
	if opt.Long < 0 {
		opt.Long = 10_000_000
		if opt.Quick {
			opt.Long = 0
		}
	}
	opt.Reps = max(opt.Reps, 1)
	if opt.ProfileDir != "" {
		if err := os.MkdirAll(opt.ProfileDir, 0o755); err != nil {
			return err
		}
	}
	return pairMain(opt, os.Stdout)
}

func defaultOut() string {
	if st, err := os.Stat("bench"); err == nil && st.IsDir() {
		if _, err := os.Stat("go.mod"); err == nil {
			return filepath.Join("bench", "results")
		}
	}
	return "."
}

func pairMain(opt PairOptions, w *os.File) error {
	rep, err := runPair(opt)
	if err != nil {
		return err
	}
	if !opt.Quiet {
		printTable(w, rep)
	}
	out := opt.Out
	switch {
	case out == "" && opt.Quick:
		// The README's first command: leave the checkout as it is.
		out = filepath.Join(os.TempDir(), "diaspora-bench")
	case out == "":
		out = defaultOut()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	base := filepath.Join(out, "bench-"+rep.Mode)
	if err := writeJSON(base+".json", rep); err != nil {
		return err
	}
	files := []string{base + ".json"}
	if !opt.NoChart {
		if err := writeChart(base+".png", rep); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
		} else {
			files = append(files, base+".png")
		}
	}
	if !opt.Quiet {
		fmt.Fprintf(w, "\nwrote %s (%.0f s)\n", strings.Join(files, ", "), rep.Seconds)
	}
	var failed []string
	for _, c := range rep.Cases {
		if len(c.Runs) == 0 {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d cases gave no result: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}
