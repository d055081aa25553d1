package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/diaspora-shm/diaspora"
)

// `bench lang`: the C library and the Python package against their
// baselines of the same run. It builds libdiaspora_shm and a C producer,
// and runs the Python package of this checkout.

//go:embed lang/cproducer.c
var cProducerSource []byte

//go:embed lang/pyconsumer.py
var pyConsumerSource []byte

type langOptions struct {
	Reps      int
	Events    int // 64 B events of the Go and C cases
	PyEvents  int // 64 B events of the Python cases
	Frames    int // 16 MiB frames
	FrameSize string
	Python    string
	Only      string
}

type langRun struct {
	opt    langOptions
	self   string
	tmp    string
	lib    string
	cprod  string
	pyEnv  []string
	pyFile string
}

func langCmd(args []string) error {
	fs := pflag.NewFlagSet("lang", pflag.ContinueOnError)
	var o langOptions
	fs.IntVar(&o.Reps, "reps", 3, "runs of each case, interleaved; medians are quoted")
	fs.IntVar(&o.Events, "events", 2_000_000, "64 B events of the Go and C cases")
	fs.IntVar(&o.PyEvents, "py-events", 300_000, "64 B events of the Python cases")
	fs.IntVar(&o.Frames, "frames", 100, "frames of the large-event cases")
	fs.StringVar(&o.FrameSize, "frame-size", "16MiB", "size of a frame")
	fs.StringVar(&o.Only, "only", "", "run only the cases whose names contain this (and their baselines)")
	py := "python3"
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3" // Debian's, with numpy from apt
	}
	fs.StringVar(&o.Python, "python", py, "the Python interpreter")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := setupLang(o)
	if err != nil {
		return err
	}
	defer os.RemoveAll(r.tmp)
	return r.run()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("bench lang runs from the repository (go list -m: %v)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func setupLang(o langOptions) (*langRun, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "diaspora-bench-lang-")
	if err != nil {
		return nil, err
	}
	r := &langRun{opt: o, self: self, tmp: tmp, lib: filepath.Join(tmp, "libdiaspora_shm.so")}
	fmt.Fprintln(os.Stderr, "bench lang: building libdiaspora_shm and the C producer")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", r.lib, "./capi")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
	}
	src := filepath.Join(tmp, "cproducer.c")
	r.pyFile = filepath.Join(tmp, "pyconsumer.py")
	if err := os.WriteFile(src, cProducerSource, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.pyFile, pyConsumerSource, 0o644); err != nil {
		return nil, err
	}
	r.cprod = filepath.Join(tmp, "cproducer")
	gcc := exec.Command("gcc", "-O2", "-I", filepath.Join(root, "capi"), "-o", r.cprod, src,
		"-L"+tmp, "-ldiaspora_shm", "-Wl,-rpath,"+tmp)
	if out, err := gcc.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v\n%s", err, out)
	}
	r.pyEnv = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "python"), "DIASPORA_SHM_LIB="+r.lib)
	return r, nil
}

// langCase is one row: a producer, a consumer, their event size.
type langCase struct {
	Name     string
	Baseline string // the row it is compared to ("" for a baseline)
	Size     int
	N, Warm  int
	Ring     string
	AckEvery int
	run      func(r *langRun, c langCase) (float64, error)
}

func (r *langRun) cases() ([]langCase, error) {
	frame, err := parseSizeFlag(r.opt.FrameSize)
	if err != nil {
		return nil, err
	}
	n, pn, fn := r.opt.Events, r.opt.PyEvents, r.opt.Frames
	all := []langCase{
		{Name: "64 B: Go producer → Go consumer", Size: 64, N: n, Warm: n / 10, Ring: "64MiB", run: goToGo},
		{Name: "64 B: C producer → Go consumer", Baseline: "64 B: Go producer → Go consumer", Size: 64, N: n, Warm: n / 10, Ring: "64MiB", run: cToGo},
		{Name: "64 B: C producer, push_many → Go consumer", Baseline: "64 B: Go producer → Go consumer", Size: 64, N: n, Warm: n / 10, Ring: "64MiB", run: cManyToGo},
		{Name: "64 B: Go → Python socket reader", Size: 64, N: pn, Warm: pn / 10, run: goToPySocket},
		{Name: "64 B: Go producer → Python consumer", Baseline: "64 B: Go → Python socket reader", Size: 64, N: pn, Warm: pn / 10, Ring: "64MiB", run: goToPy},
		{Name: "64 B: Go producer → Python batches()", Baseline: "64 B: Go → Python socket reader", Size: 64, N: pn, Warm: pn / 10, Ring: "64MiB", run: goToPyBatches},
		// A zero-copy consumer of frames acknowledges each: 16 of them fill the ring.
		{Name: "frames: Go producer → Go consumer", Size: int(frame), N: fn, Warm: max(fn/10, 2), Ring: "256MiB", AckEvery: 1, run: goToGo},
		{Name: "frames: Go producer → Python into numpy", Baseline: "frames: Go producer → Go consumer", Size: int(frame), N: fn, Warm: max(fn/10, 2), Ring: "256MiB", AckEvery: 1, run: goToPy},
	}
	if r.opt.Only == "" {
		return all, nil
	}
	keep := map[string]bool{}
	for _, c := range all {
		if strings.Contains(c.Name, r.opt.Only) {
			keep[c.Name], keep[c.Baseline] = true, true
		}
	}
	var cases []langCase
	for _, c := range all {
		if keep[c.Name] {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("--only %q: no case has it in its name", r.opt.Only)
	}
	return cases, nil
}

type langResult struct {
	Name      string    `json:"name"`
	Baseline  string    `json:"baseline,omitempty"`
	Size      int       `json:"size"`
	Rates     []float64 `json:"events_per_s"`
	Median    float64   `json:"median_events_per_s"`
	MBs       float64   `json:"median_mb_per_s"`
	VsBase    float64   `json:"ratio_to_baseline,omitempty"`
	Ratios    []float64 `json:"ratios_per_run,omitempty"`
	BaseIndex int       `json:"-"`
}

func (r *langRun) run() error {
	cases, err := r.cases()
	if err != nil {
		return err
	}
	results := make([]langResult, len(cases))
	index := map[string]int{}
	for i, c := range cases {
		results[i] = langResult{Name: c.Name, Baseline: c.Baseline, Size: c.Size}
		index[c.Name] = i
	}
	for rep := 1; rep <= r.opt.Reps; rep++ {
		for i, c := range cases {
			fmt.Fprintf(os.Stderr, "bench lang: run %d/%d: %s\n", rep, r.opt.Reps, c.Name)
			rate, err := c.run(r, c)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			results[i].Rates = append(results[i].Rates, rate)
		}
	}
	fmt.Printf("\n%-42s %12s %10s %14s\n", "case (median of "+fmt.Sprint(r.opt.Reps)+" interleaved runs)", "events/s", "MB/s", "× baseline")
	for i := range results {
		res := &results[i]
		res.Median = median(res.Rates)
		res.MBs = res.Median * float64(res.Size) / 1e6
		ratio := ""
		if res.Baseline != "" {
			b := results[index[res.Baseline]]
			for k := range res.Rates {
				res.Ratios = append(res.Ratios, res.Rates[k]/b.Rates[k])
			}
			res.VsBase = median(res.Ratios)
			ratio = fmt.Sprintf("%.2f", res.VsBase)
		}
		fmt.Printf("%-42s %12s %10.0f %14s\n", res.Name, humanRate(res.Median), res.MBs, ratio)
	}
	fmt.Println("\ntargets:")
	target := func(name string, bar float64) {
		i, ok := index[name]
		if !ok {
			return // not run (--only)
		}
		res := results[i]
		verdict := "[met]   "
		if res.VsBase < bar {
			verdict = "[missed]"
		}
		fmt.Printf("  %s %-42s want >= %.1fx %-28q got %.2f (runs %s)\n", verdict, name, bar, res.Baseline, res.VsBase, fmtRatios(res.Ratios))
	}
	target("64 B: Go producer → Python consumer", 1.0)
	target("64 B: Go producer → Python batches()", 1.0)
	target("frames: Go producer → Python into numpy", 0.8)
	target("64 B: C producer → Go consumer", 0.8)
	target("64 B: C producer, push_many → Go consumer", 0.8)
	dir := filepath.Join(os.TempDir(), "diaspora-bench")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		b, _ := json.MarshalIndent(results, "", "  ")
		path := filepath.Join(dir, "lang.json")
		if os.WriteFile(path, b, 0o644) == nil {
			fmt.Printf("\nwrote %s\n", path)
		}
	}
	return nil
}

func fmtRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}

func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// topicDirs makes fresh directories and the topic "bench" in them.
func (r *langRun) topicDirs(ring string) (drvCfg, root, shmDir string, cleanup func(), err error) {
	shmDir, err = os.MkdirTemp(shmBase(), "diaspora-bench-shm-")
	if err != nil {
		return
	}
	root, err = os.MkdirTemp(shmBase(), "diaspora-bench-root-")
	if err != nil {
		os.RemoveAll(shmDir)
		return
	}
	cleanup = func() { os.RemoveAll(shmDir); os.RemoveAll(root) }
	b, _ := json.Marshal(map[string]string{"root_path": root, "shm_path": shmDir})
	drvCfg = string(b)
	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(drvCfg))
	if err != nil {
		cleanup()
		return
	}
	err = d.CreateTopic("bench", diaspora.MustMetadata(fmt.Sprintf(`{"ring_size":%q,"durability":"none"}`, ring)))
	d.Close()
	if err != nil {
		cleanup()
	}
	return
}

func (r *langRun) runner() *pairRunner { return &pairRunner{self: r.self} }

func goConsumer(drvCfg string, c langCase) ConsumerConfig {
	return ConsumerConfig{Driver: "shm", DriverConfig: drvCfg, Topic: "bench", N: c.N, Warm: c.Warm,
		Mode: "zerocopy", AckEvery: ackEvery(c), Ready: true, Timeout: "120s", LocalClock: true, DataSizeHint: c.Size}
}

func ackEvery(c langCase) int {
	if c.AckEvery > 0 {
		return c.AckEvery
	}
	return 4096
}

func goProducer(drvCfg string, c langCase) ProducerConfig {
	ring, _ := parseSizeFlag(c.Ring)
	return ProducerConfig{Driver: "shm", DriverConfig: drvCfg, Topic: "bench", N: c.N, Warm: c.Warm,
		DataSize: c.Size, Window: window(c.Size, int(ring))}
}

// stream runs a consumer child until it is ready, then a producer child,
// and returns the consumer's rate.
func stream(cons *child, startProducer func() (*child, error)) (float64, error) {
	if err := cons.waitReady(); err != nil {
		cons.kill()
		return 0, err
	}
	prod, err := startProducer()
	if err != nil {
		cons.kill()
		return 0, err
	}
	var pr map[string]any
	if err := prod.wait(&pr); err != nil {
		cons.kill()
		return 0, err
	}
	var cr ConsumerResult
	if err := cons.wait(&cr); err != nil {
		return 0, err
	}
	return cr.EventsSec, nil
}

// toGoConsumer streams c into a Go consumer of a fresh topic from the
// producer that start starts.
func toGoConsumer(r *langRun, c langCase, start func(drv, root, shmDir string) (*child, error)) (float64, error) {
	drv, root, shmDir, cleanup, err := r.topicDirs(c.Ring)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	cons, err := r.runner().spawn("consumer", goConsumer(drv, c), nil)
	if err != nil {
		return 0, err
	}
	return stream(cons, func() (*child, error) { return start(drv, root, shmDir) })
}

func goToGo(r *langRun, c langCase) (float64, error) {
	return toGoConsumer(r, c, func(drv, _, _ string) (*child, error) {
		return r.runner().spawn("producer", goProducer(drv, c), nil)
	})
}

func cToGo(r *langRun, c langCase) (float64, error) { return cProducerToGo(r, c, false) }

func cManyToGo(r *langRun, c langCase) (float64, error) { return cProducerToGo(r, c, true) }

func cProducerToGo(r *langRun, c langCase, many bool) (float64, error) {
	return toGoConsumer(r, c, func(_, root, shmDir string) (*child, error) {
		args := []string{root, shmDir, "bench", fmt.Sprint(c.N), fmt.Sprint(c.Warm), fmt.Sprint(c.Size)}
		if many {
			args = append(args, "many")
		}
		return spawnCmd(exec.Command(r.cprod, args...), "C producer")
	})
}

func (r *langRun) python(args ...string) *exec.Cmd {
	cmd := exec.Command(r.opt.Python, append([]string{r.pyFile}, args...)...)
	cmd.Env = r.pyEnv
	return cmd
}

func goToPy(r *langRun, c langCase) (float64, error) {
	mode := "shm"
	if c.Size > 1<<20 {
		mode = "frames"
	}
	return goToPyMode(r, c, mode)
}

func goToPyBatches(r *langRun, c langCase) (float64, error) { return goToPyMode(r, c, "batches") }

func goToPyMode(r *langRun, c langCase, mode string) (float64, error) {
	drv, root, shmDir, cleanup, err := r.topicDirs(c.Ring)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	cons, err := spawnCmd(r.python(mode, root, shmDir, "bench", fmt.Sprint(c.N), fmt.Sprint(c.Warm), fmt.Sprint(ackEvery(c))), "Python consumer")
	if err != nil {
		return 0, err
	}
	return stream(cons, func() (*child, error) { return r.runner().spawn("producer", goProducer(drv, c), nil) })
}

func goToPySocket(r *langRun, c langCase) (float64, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	rd, wr := os.NewFile(uintptr(fds[0]), "unix-reader"), os.NewFile(uintptr(fds[1]), "unix-writer")
	cmd := r.python("socket", fmt.Sprint(c.N), fmt.Sprint(c.Warm), fmt.Sprint(c.Size))
	cmd.ExtraFiles = []*os.File{rd}
	cons, err := spawnCmd(cmd, "Python socket reader")
	rd.Close()
	if err != nil {
		wr.Close()
		return 0, err
	}
	defer wr.Close()
	return stream(cons, func() (*child, error) {
		ch, err := r.runner().spawn("streamwriter", StreamConfig{N: c.N, Warm: c.Warm, DataSize: c.Size, Window: 4096}, wr)
		wr.Close()
		return ch, err
	})
}
