package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diaspora-shm/diaspora"
)

// Case is one thing measured: diaspora-shm with a durability, a producer kind
// and a consumer kind, or a baseline.
type Case struct {
	Kind       string `json:"kind"` // "shm", "unix", "pipe", "chan", "copy"
	Size       int    `json:"size"`
	Durability string `json:"durability,omitempty"`
	Producer   string `json:"producer,omitempty"` // "push", "claim", "push256" (BatchSize(256))
	Consumer   string `json:"consumer,omitempty"` // "copy", "zerocopy", "events" (zero-copy, for range Events)
}

// Label names the case without its size.
func (c Case) Label() string {
	switch c.Kind {
	case "shm":
		return fmt.Sprintf("shm %s %s→%s", c.Durability, c.Producer, c.Consumer)
	case "unix":
		return "unix socket"
	case "copy":
		return "copy()"
	}
	return c.Kind
}

// Name names the case with its size.
func (c Case) Name() string { return sizeName(c.Size) + " " + c.Label() }

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// PairOptions are the flags of `pair`.
type PairOptions struct {
	Quick      bool
	Sizes      []int
	Durability []string
	Reps       int
	Scale      float64
	Latency    bool
	Long       int  // events of the consumer-memory run; 0: none
	Quad       bool // run the 2×2 case (4 partitions, 2 producers → 2 consumers)
	AckEvery   int
	RingSize   string
	Out        string
	ProfileDir string
	Only       string
	NoChart    bool
	WaitQuiet  bool
	Quiet      bool // no table (tests)
	Events     int  // > 0: this many events in every case (smoke tests)
}

// caseResult collects the runs of one case.
type caseResult struct {
	Case
	Name           string             `json:"name"`
	N              int                `json:"n"`
	Warm           int                `json:"warm"`
	LatencyN       int                `json:"latency_samples,omitempty"`
	PilotEvSec     float64            `json:"pilot_events_per_s,omitempty"`
	Batch          int                `json:"batch,omitempty"`
	EventsSec      float64            `json:"events_per_s"` // median of the runs
	MBSec          float64            `json:"mb_per_s"`
	ProducerEvSec  float64            `json:"producer_events_per_s,omitempty"`
	Runs           []runFigures       `json:"runs"`
	Ratios         map[string]float64 `json:"ratio_to,omitempty"`
	Latency        *LatencyResult     `json:"latency,omitempty"` // median of each percentile over the runs
	LatencyRuns    []*LatencyResult   `json:"latency_runs,omitempty"`
	LatencyPaceNS  int64              `json:"latency_pace_ns,omitempty"`
	ConsumerMaxRSS int64              `json:"consumer_max_rss,omitempty"`
	Errors         []string           `json:"errors,omitempty"`
}

type runFigures struct {
	EventsSec     float64 `json:"events_per_s"`
	MBSec         float64 `json:"mb_per_s"`
	Seconds       float64 `json:"seconds"`
	ProducerEvSec float64 `json:"producer_events_per_s,omitempty"`
	OutOfOrder    int     `json:"out_of_order,omitempty"`
	RSSAt1M       int64   `json:"consumer_max_rss_at_1m,omitempty"`
	RSSEnd        int64   `json:"consumer_max_rss_end,omitempty"`
}

type pairRunner struct {
	opt      PairOptions
	self     string
	progress *progress
}

func defaultSizes(quick bool) []int {
	if quick {
		return []int{64, 1 << 20}
	}
	return []int{64, 4 << 10, 64 << 10, 1 << 20}
}

func defaultDurability(quick bool) []string {
	if quick {
		return []string{"none", "async"}
	}
	return []string{"none", "async", "sync"}
}

// casesFor lists, for one size, the baselines then the subjects.
func casesFor(size int, durs []string) []Case {
	cs := []Case{{Kind: "copy", Size: size}, {Kind: "chan", Size: size}, {Kind: "unix", Size: size}, {Kind: "pipe", Size: size}}
	for _, d := range durs {
		if d != "none" {
			// What the disk under the log does: durable rows read against it.
			cs = append(cs, Case{Kind: "disk", Size: size})
			break
		}
	}
	for _, d := range durs {
		for _, cm := range []string{"copy", "zerocopy"} {
			cs = append(cs, Case{Kind: "shm", Size: size, Durability: d, Producer: "push", Consumer: cm})
		}
		if d == "none" {
			cs = append(cs, Case{Kind: "shm", Size: size, Durability: d, Producer: "claim", Consumer: "zerocopy"})
			if size <= 4<<10 {
				// BatchSize(256) pushes, read with for range Events.
				cs = append(cs, Case{Kind: "shm", Size: size, Durability: d, Producer: "push256", Consumer: "events"})
			}
		}
	}
	return cs
}

func (r *pairRunner) events(c Case) int {
	if r.opt.Events > 0 {
		return r.opt.Events
	}
	budget, lo, hi := 2e9, 2000.0, 5e6
	if r.opt.Quick {
		budget, lo, hi = 5e8, 500, 1e6
	}
	n := min(max(budget/float64(c.Size), lo), hi)
	if c.Kind == "shm" && c.Durability == "sync" {
		n /= 4
	} else if c.Kind == "shm" && c.Durability == "async" && c.Size > 4096 {
		n /= 2
	}
	return max(int(n*r.opt.Scale), 10)
}

func (r *pairRunner) ringBytes() int {
	n, err := parseSizeFlag(r.opt.RingSize)
	if err != nil || n <= 0 {
		return 64 << 20
	}
	return int(n)
}

// warmEvents covers the ring once, so every page is faulted in and each
// process has mapped it before the clock starts.
func (r *pairRunner) warmEvents(c Case) int {
	rec := (32 + 2 + c.Size + 15) &^ 15
	w := r.ringBytes()/rec + 16
	if r.opt.Events > 0 {
		w = min(w, max(r.opt.Events/2, 16))
	}
	return w
}

// window is the number of source slots (pushes in flight): a ring's worth.
func window(size, ring int) int { return min(max(ring/size, 16), 65536) }

func batchFor(c Case) int {
	if c.Durability == "none" {
		return 0 // adaptive: written straight into the ring
	}
	if c.Size <= 4096 {
		return min((64<<10)/c.Size, 1024)
	}
	if c.Durability == "sync" {
		return 1
	}
	return 0 // adaptive
}

func (r *pairRunner) ackEvery(c Case) int {
	a := r.opt.AckEvery
	if c.Consumer == "zerocopy" || c.Consumer == "events" {
		// A zero-copy consumer holds ring space until it acknowledges.
		rec := (32 + 2 + c.Size + 15) &^ 15
		a = min(a, max(r.ringBytes()/4/rec, 1))
	}
	return a
}

func latencyPace(size int) int64 { return 10_000 + int64(size)/2 }

func (r *pairRunner) latencySamples(c Case) int {
	s := 50_000
	if r.opt.Quick {
		s = 10_000
	}
	limit := int(1e9 / latencyPace(c.Size))
	if r.opt.Quick {
		limit /= 2
	}
	if r.opt.Events > 0 {
		return r.opt.Events
	}
	return max(int(float64(min(s, limit))*r.opt.Scale), 20)
}

// measure runs one case once with n timed events after warm untimed ones;
// pace > 0 makes it a paced latency run.
func (r *pairRunner) measure(c Case, n, warm int, pace int64, tag string) (ConsumerResult, ProducerResult, error) {
	switch c.Kind {
	case "copy":
		return runCopy(n, warm, c.Size, r.ringBytes()), ProducerResult{}, nil
	case "chan":
		cr, err := runChan(n, warm, c.Size, max(batchFor(c), 1), window(c.Size, r.ringBytes()), pace)
		return cr, ProducerResult{}, err
	case "unix", "pipe":
		return r.runStream(c, StreamConfig{N: n, Warm: warm, DataSize: c.Size, Window: window(c.Size, r.ringBytes()), PaceNS: pace})
	case "shm":
		return r.runShm(c, n, warm, pace, tag)
	case "disk":
		if pace > 0 {
			return ConsumerResult{}, ProducerResult{}, errNoLatency
		}
		cr, err := runDisk(n, warm, c.Size, os.TempDir())
		return cr, ProducerResult{}, err
	}
	return ConsumerResult{}, ProducerResult{}, fmt.Errorf("unknown case kind %q", c.Kind)
}

func (r *pairRunner) runStream(c Case, cfg StreamConfig) (ConsumerResult, ProducerResult, error) {
	var rd io.ReadCloser
	var wr *os.File
	if c.Kind == "pipe" {
		pr, pw, err := os.Pipe()
		if err != nil {
			return ConsumerResult{}, ProducerResult{}, err
		}
		rd, wr = pr, pw
	} else {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return ConsumerResult{}, ProducerResult{}, err
		}
		rf := os.NewFile(uintptr(fds[0]), "unix-reader")
		conn, err := net.FileConn(rf) // the reader goes through the netpoller, as os.Pipe's does
		rf.Close()
		if err != nil {
			unix.Close(fds[1])
			return ConsumerResult{}, ProducerResult{}, err
		}
		rd, wr = conn, os.NewFile(uintptr(fds[1]), "unix-writer")
	}
	defer rd.Close()
	child, err := r.spawn("streamwriter", cfg, wr)
	wr.Close()
	if err != nil {
		return ConsumerResult{}, ProducerResult{}, err
	}
	cr, rerr := readStream(rd, cfg, cfg.PaceNS > 0)
	var pr ProducerResult
	werr := child.wait(&pr)
	if rerr != nil {
		return cr, pr, rerr
	}
	return cr, pr, werr
}

func shmBase() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func (r *pairRunner) runShm(c Case, n, warm int, pace int64, tag string) (ConsumerResult, ProducerResult, error) {
	var cr ConsumerResult
	var pr ProducerResult
	shmDir, err := os.MkdirTemp(shmBase(), "diaspora-bench-shm-")
	if err != nil {
		return cr, pr, err
	}
	defer os.RemoveAll(shmDir)
	// The log and the consumer positions of durable topics go to real
	// storage (the temp directory); a topic with durability none keeps them
	// next to its ring, no less durable than the ring itself.
	rootBase := os.TempDir()
	if c.Durability == "none" {
		rootBase = shmBase()
	}
	rootDir, err := os.MkdirTemp(rootBase, "diaspora-bench-root-")
	if err != nil {
		return cr, pr, err
	}
	defer os.RemoveAll(rootDir)
	drvCfg, _ := json.Marshal(map[string]string{"root_path": rootDir, "shm_path": shmDir})
	topicCfg := fmt.Sprintf(`{"num_partitions":1,"ring_size":%q,"durability":%q}`, r.opt.RingSize, c.Durability)
	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(string(drvCfg)))
	if err != nil {
		return cr, pr, err
	}
	err = d.CreateTopic("bench", diaspora.MustMetadata(topicCfg))
	d.Close()
	if err != nil {
		return cr, pr, err
	}
	ccfg := ConsumerConfig{
		Driver: "shm", DriverConfig: string(drvCfg), Topic: "bench", N: n, Warm: warm,
		Mode: c.Consumer, AckEvery: r.ackEvery(c), Latency: pace > 0, Ready: true, Timeout: "60s",
		DataSizeHint: c.Size,
	}
	pcfg := ProducerConfig{
		Driver: "shm", DriverConfig: string(drvCfg), Topic: "bench", N: n, Warm: warm,
		DataSize: c.Size, Batch: batchFor(c), Window: window(c.Size, r.ringBytes()), Claim: c.Producer == "claim", PaceNS: pace,
	}
	if c.Producer == "push256" {
		pcfg.Batch = 256
	}
	if pace > 0 {
		ccfg.Spin = "1s" // a spinning consumer
		pcfg.Batch = 0   // adaptive: commit at once
	}
	if r.opt.ProfileDir != "" {
		base := filepath.Join(r.opt.ProfileDir, profileName(c, tag))
		ccfg.CPUProfile, pcfg.CPUProfile = base+".consumer.pprof", base+".producer.pprof"
	}
	cons, err := r.spawn("consumer", ccfg, nil)
	if err != nil {
		return cr, pr, err
	}
	if err := cons.waitReady(); err != nil {
		cons.kill()
		return cr, pr, err
	}
	prod, err := r.spawn("producer", pcfg, nil)
	if err != nil {
		cons.kill()
		return cr, pr, err
	}
	perr := prod.wait(&pr)
	if perr != nil {
		cons.kill()
	}
	cerr := cons.wait(&cr)
	if perr != nil {
		return cr, pr, perr
	}
	return cr, pr, cerr
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

func profileName(c Case, tag string) string {
	return strings.Trim(nonWord.ReplaceAllString(c.Name()+" "+tag, "-"), "-")
}

// child is a role process.
type child struct {
	cmd    *exec.Cmd
	lines  chan string
	result string
	done   chan struct{}
	role   string
}

func (r *pairRunner) spawn(role string, cfg any, extra *os.File) (*child, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.self)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(b))
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	return spawnCmd(cmd, role)
}

// spawnCmd starts a process that speaks the roles' protocol: READY once it
// can receive, RESULT <json> at the end, anything else passed on.
func spawnCmd(cmd *exec.Cmd, role string) (*child, error) {
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, lines: make(chan string, 4), done: make(chan struct{}), role: role}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "READY":
				c.lines <- line
			case strings.HasPrefix(line, "RESULT "):
				c.result = strings.TrimPrefix(line, "RESULT ")
			default:
				fmt.Fprintln(os.Stderr, line)
			}
		}
		close(c.done)
	}()
	return c, nil
}

func (c *child) waitReady() error {
	select {
	case <-c.lines:
		return nil
	case <-c.done:
		return fmt.Errorf("%s process exited before it was ready: %v", c.role, c.cmd.Wait())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s process not ready after 30s", c.role)
	}
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
	c.cmd.Wait()
}

func (c *child) wait(v any) error {
	<-c.done
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("%s process: %w", c.role, err)
	}
	if c.result == "" {
		return fmt.Errorf("%s process gave no result", c.role)
	}
	return json.Unmarshal([]byte(c.result), v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianLatency(runs []*LatencyResult) *LatencyResult {
	if len(runs) == 0 {
		return nil
	}
	pick := func(f func(*LatencyResult) int64) int64 {
		v := make([]float64, len(runs))
		for i, l := range runs {
			v[i] = float64(f(l))
		}
		return int64(median(v))
	}
	out := &LatencyResult{
		P50: pick(func(l *LatencyResult) int64 { return l.P50 }), P90: pick(func(l *LatencyResult) int64 { return l.P90 }),
		P99: pick(func(l *LatencyResult) int64 { return l.P99 }), P999: pick(func(l *LatencyResult) int64 { return l.P999 }),
		Max: pick(func(l *LatencyResult) int64 { return l.Max }),
	}
	for _, l := range runs {
		out.Count += l.Count
		out.Mean += l.Mean / float64(len(runs))
	}
	return out
}

// LongRun is the consumer-memory run.
type LongRun struct {
	Case      Case    `json:"case"`
	N         int     `json:"n"`
	EventsSec float64 `json:"events_per_s"`
	RSSAt1M   int64   `json:"consumer_max_rss_at_1m"`
	RSSEnd    int64   `json:"consumer_max_rss_end"`
	Growth    int64   `json:"growth_bytes"`
	Error     string  `json:"error,omitempty"`
}

// Report is the JSON file.
type Report struct {
	Machine  Machine       `json:"machine"`
	Mode     string        `json:"mode"`
	Config   any           `json:"config"`
	Cases    []*caseResult `json:"cases"`
	Long     []LongRun     `json:"long_runs,omitempty"`
	Quad     *QuadRun      `json:"quad,omitempty"`
	Targets  []Target      `json:"targets"`
	Seconds  float64       `json:"wall_seconds"`
	Warnings []string      `json:"warnings,omitempty"`
}

func runPair(opt PairOptions) (*Report, error) {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	r := &pairRunner{opt: opt, self: self}
	start := time.Now()
	rep := &Report{Machine: describeMachine(), Mode: "full"}
	if opt.Quick {
		rep.Mode = "quick"
	}
	if opt.WaitQuiet {
		for i := 0; i < 10; i++ {
			l := loadAvg1()
			if l >= 0 && l < 1.0 {
				break
			}
			fmt.Fprintf(os.Stderr, "load average %.2f >= 1.0: waiting 30s for a quiet machine\n", l)
			time.Sleep(30 * time.Second)
		}
		rep.Machine.LoadAvg, _ = readTrim("/proc/loadavg")
	}
	var filter *regexp.Regexp
	if opt.Only != "" {
		if filter, err = regexp.Compile(opt.Only); err != nil {
			return nil, err
		}
	}
	var cases []*caseResult
	for _, size := range opt.Sizes {
		for _, c := range casesFor(size, opt.Durability) {
			if filter != nil && !filter.MatchString(c.Name()) {
				continue
			}
			cases = append(cases, &caseResult{Case: c, Name: c.Name(), N: r.events(c), Warm: r.warmEvents(c),
				LatencyN: r.latencySamples(c), LatencyPaceNS: latencyPace(size), Batch: batchFor(c)})
		}
	}
	rep.Cases = cases
	rep.Config = map[string]any{
		"reps": opt.Reps, "sizes": opt.Sizes, "durability": opt.Durability, "ring_size": opt.RingSize,
		"ack_every": opt.AckEvery, "scale": opt.Scale, "latency": opt.Latency, "long": opt.Long,
		"producer_threads": 0, "metadata": "{} (2 bytes)", "header": "16-byte seq+timestamp at the start of each event's data",
		"copy_consumer":     "FullDataSelector + a DataAllocator reusing one buffer",
		"zerocopy_consumer": "FullDataSelector, no allocator: Data() points into the ring; reads the header and the last byte",
		"root_path":         "durability none: a temp dir on " + shmBase() + "; async/sync: a temp dir in " + os.TempDir(),
	}
	steps := len(cases) * opt.Reps
	if opt.Events == 0 {
		for _, c := range cases {
			if c.Kind != "copy" && c.Kind != "chan" && c.Kind != "disk" {
				steps++
			}
		}
	}
	if opt.Latency {
		for _, c := range cases {
			if c.Kind != "copy" && c.Kind != "disk" {
				steps += opt.Reps
			}
		}
	}
	if opt.Long > 0 {
		steps += 2
	}
	r.progress = newProgress(steps)
	defer r.progress.done()
	// A short pilot run of each inter-process case sizes its runs: about
	// target seconds each (never more events than planned), a quarter
	// second of warm-up at most (never more than a ring's worth), and no
	// more latency samples than half a second's worth.
	if opt.Events == 0 {
		target := 1.0
		if opt.Quick {
			target = 0.4
		}
		for _, cr := range cases {
			if cr.Kind == "copy" || cr.Kind == "chan" || cr.Kind == "disk" {
				continue
			}
			r.progress.step("pilot " + cr.Name)
			pn := max(cr.N/50, 10)
			cons, _, err := r.measure(cr.Case, pn, min(cr.Warm, pn), 0, "pilot")
			if err != nil || cons.EventsSec <= 0 {
				continue
			}
			rate := cons.EventsSec
			cr.PilotEvSec = rate
			cr.N = min(cr.N, max(int(rate*target*opt.Scale), 10))
			cr.Warm = min(cr.Warm, max(int(rate/4), 16))
			// Pace at most half the sustainable rate: latency unloaded.
			cr.LatencyPaceNS = max(latencyPace(cr.Size), int64(2e9/rate))
			cr.LatencyN = min(cr.LatencyN, max(int(5e8/float64(cr.LatencyPaceNS)), 20))
		}
	}
	// Interleave: every rep runs each size's baselines and subjects in turn.
	for rep := 0; rep < opt.Reps; rep++ {
		for _, cr := range cases {
			r.progress.step(fmt.Sprintf("rep %d/%d %s", rep+1, opt.Reps, cr.Name))
			cons, prod, err := r.measure(cr.Case, cr.N, cr.Warm, 0, fmt.Sprintf("rep%d", rep+1))
			if err != nil {
				cr.Errors = append(cr.Errors, err.Error())
				continue
			}
			cr.Runs = append(cr.Runs, runFigures{
				EventsSec: cons.EventsSec, MBSec: cons.MBSec, Seconds: cons.Seconds,
				ProducerEvSec: prod.EventsSec, OutOfOrder: cons.OutOfOrder,
				RSSAt1M: cons.RSSAt1M, RSSEnd: cons.RSSEnd,
			})
			if cons.OutOfOrder > 0 {
				cr.Errors = append(cr.Errors, fmt.Sprintf("rep %d: %d events out of order", rep+1, cons.OutOfOrder))
			}
		}
		if !opt.Latency {
			continue
		}
		for _, cr := range cases {
			if cr.Kind == "copy" || cr.Kind == "disk" {
				continue
			}
			r.progress.step(fmt.Sprintf("rep %d/%d latency %s", rep+1, opt.Reps, cr.Name))
			cons, _, err := r.measure(cr.Case, cr.LatencyN, min(1000, cr.Warm), cr.LatencyPaceNS, fmt.Sprintf("lat%d", rep+1))
			if err != nil {
				cr.Errors = append(cr.Errors, "latency: "+err.Error())
				continue
			}
			cr.LatencyRuns = append(cr.LatencyRuns, cons.Latency)
		}
	}
	for _, cr := range cases {
		var ev, mb, pev []float64
		for _, f := range cr.Runs {
			ev, mb, pev = append(ev, f.EventsSec), append(mb, f.MBSec), append(pev, f.ProducerEvSec)
			cr.ConsumerMaxRSS = max(cr.ConsumerMaxRSS, f.RSSEnd)
		}
		cr.EventsSec, cr.MBSec, cr.ProducerEvSec = median(ev), median(mb), median(pev)
		cr.Latency = medianLatency(cr.LatencyRuns)
	}
	for _, cr := range cases {
		cr.Ratios = map[string]float64{}
		for _, b := range cases {
			if b.Size == cr.Size && b.Kind != "shm" && b.MBSec > 0 && b != cr {
				cr.Ratios[b.Label()] = cr.MBSec / b.MBSec
			}
		}
	}
	if opt.Long > 0 {
		for _, cm := range []string{"copy", "zerocopy"} {
			c := Case{Kind: "shm", Size: 64, Durability: "none", Producer: "push", Consumer: cm}
			r.progress.step("memory run " + c.Name())
			lr := LongRun{Case: c, N: opt.Long}
			cons, _, err := r.measure(c, opt.Long, r.warmEvents(c), 0, "long")
			if err != nil {
				lr.Error = err.Error()
			} else {
				lr.EventsSec, lr.RSSAt1M, lr.RSSEnd = cons.EventsSec, cons.RSSAt1M, cons.RSSEnd
				lr.Growth = cons.RSSEnd - cons.RSSAt1M
			}
			rep.Long = append(rep.Long, lr)
		}
	}
	if opt.Quad && (filter == nil || filter.MatchString(quadName)) {
		r.progress.step(quadName)
		q := &QuadRun{Size: 64}
		n := 2_000_000
		if opt.Quick {
			n = 500_000
		}
		n = max(int(float64(n)*opt.Scale), 1000)
		for rep := 0; rep < opt.Reps; rep++ {
			qr, err := r.runQuad(q.Size, n)
			if err != nil {
				q.Errors = append(q.Errors, err.Error())
				continue
			}
			q.Runs = append(q.Runs, qr)
		}
		var p0, p1, agg []float64
		for _, qr := range q.Runs {
			p0, p1, agg = append(p0, qr.PairEvSec[0]), append(p1, qr.PairEvSec[1]), append(agg, qr.AggregateEvSec)
		}
		q.PairEvSec = [2]float64{median(p0), median(p1)}
		q.AggregateEvSec = median(agg)
		rep.Quad = q
	}
	rep.Targets = evaluateTargets(rep)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

const quadName = "64B shm none 4 partitions, 2 producers → 2 consumers"

// QuadRun is the 2×2 case: a topic of 4 partitions, producer process i
// pushing to partitions 2i and 2i+1 and consumer process i reading them
// (zero copy), both pairs at once: four processes on the node's cores.
type QuadRun struct {
	Size           int          `json:"size"`
	Runs           []quadFigure `json:"runs"`
	PairEvSec      [2]float64   `json:"pair_events_per_s"` // medians
	AggregateEvSec float64      `json:"aggregate_events_per_s"`
	Errors         []string     `json:"errors,omitempty"`
}

type quadFigure struct {
	PairEvSec      [2]float64 `json:"pair_events_per_s"`
	AggregateEvSec float64    `json:"aggregate_events_per_s"` // all events over the span from the first start to the last end
}

func (r *pairRunner) runQuad(size, n int) (quadFigure, error) {
	var q quadFigure
	shmDir, err := os.MkdirTemp(shmBase(), "diaspora-bench-shm-")
	if err != nil {
		return q, err
	}
	defer os.RemoveAll(shmDir)
	rootDir, err := os.MkdirTemp(shmBase(), "diaspora-bench-root-")
	if err != nil {
		return q, err
	}
	defer os.RemoveAll(rootDir)
	drvCfg, _ := json.Marshal(map[string]string{"root_path": rootDir, "shm_path": shmDir})
	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(string(drvCfg)))
	if err != nil {
		return q, err
	}
	err = d.CreateTopic("quad", diaspora.MustMetadata(fmt.Sprintf(`{"num_partitions":4,"ring_size":%q,"durability":"none"}`, r.opt.RingSize)))
	d.Close()
	if err != nil {
		return q, err
	}
	warm := min(n/10, 100_000)
	var cons, prods [2]*child
	for i := range 2 {
		c, err := r.spawn("consumer", ConsumerConfig{
			Driver: "shm", DriverConfig: string(drvCfg), Topic: "quad", Name: fmt.Sprintf("c%d", i), N: n, Warm: warm,
			Mode: "zerocopy", AckEvery: r.ackEvery(Case{Kind: "shm", Size: size, Consumer: "zerocopy"}), Ready: true, Timeout: "60s",
			DataSizeHint: size, Targets: []int{2 * i, 2*i + 1},
		}, nil)
		if err != nil {
			return q, err
		}
		defer c.kill()
		if err := c.waitReady(); err != nil {
			return q, err
		}
		cons[i] = c
	}
	for i := range 2 {
		p, err := r.spawn("producer", ProducerConfig{
			Driver: "shm", DriverConfig: string(drvCfg), Topic: "quad", N: n, Warm: warm, DataSize: size,
			Window: window(size, r.ringBytes()), Partitions: []int{2 * i, 2*i + 1},
		}, nil)
		if err != nil {
			return q, err
		}
		defer p.kill()
		prods[i] = p
	}
	var first, last int64
	for i := range 2 {
		var pr ProducerResult
		if err := prods[i].wait(&pr); err != nil {
			return q, err
		}
		var cr ConsumerResult
		if err := cons[i].wait(&cr); err != nil {
			return q, err
		}
		if cr.OutOfOrder > 0 {
			return q, fmt.Errorf("consumer %d: %d events out of order", i, cr.OutOfOrder)
		}
		q.PairEvSec[i] = cr.EventsSec
		if first == 0 || cr.Start < first {
			first = cr.Start
		}
		last = max(last, cr.End)
	}
	if last > first {
		q.AggregateEvSec = float64(2*n) / (float64(last-first) / 1e9)
	}
	return q, nil
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// progress is the one-line status on stderr, shown only on a terminal.
type progress struct {
	mu    sync.Mutex
	on    bool
	total int
	n     int
	start time.Time
}

func newProgress(total int) *progress {
	return &progress{on: stderrIsTerminal(), total: total, start: time.Now()}
}

func (p *progress) step(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.on {
		fmt.Fprintf(os.Stderr, "\r\033[K[%d/%d %3.0fs] %s", p.n, p.total, time.Since(p.start).Seconds(), what)
	}
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}
