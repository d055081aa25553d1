package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/kafka"
)

const forwardLong = `Copy the events of topics to other topics, possibly of another driver,
with the configuration format of diaspora-ctl forward:

  [drivers.local]
  type = "shm"
  root_path = "/scratch/me/topics"

  [drivers.remote]
  type = "kafka"
  namespace = "beamline"
  [drivers.remote.kafka]
  "bootstrap.servers" = "broker1:9092,broker2:9092"

  [[forward]]
  from = "local/frames"
  to   = "remote/frames"

A [drivers.NAME] table has a type ("shm" or "kafka") and the driver's
options. Each [[forward]] entry is a policy: its own consumer of "from" (named
forward.<to>, so that it resumes where it stopped) and its own writer to "to",
in its own goroutine. Events keep their metadata and data; an event of source
partition p goes to partition p modulo the destination's partitions.

To a kafka topic no event is lost and none is written twice, across a kill -9
of the forwarder at any moment: events are written in transactions, each
record carrying its source topic, partition and event ID in headers; a source
event is acknowledged only once its transaction committed, and on start the
forwarder reads back what it last forwarded and skips what is already there.
A forwarder of the same policy started twice fences the older one. To an shm
topic events are forwarded at least once (a kill may repeat the last batch).

SIGINT or SIGTERM writes what was read, acknowledges it and stops; a policy
also stops at the end of its source's stream (a complete topic). Progress
(events forwarded and skipped, rate) goes to a terminal on stderr every
second, or as JSON lines on stdout with --json.`

func (a *app) newForwardCmd() *cobra.Command {
	var (
		config   string
		interval time.Duration
		batch    int
	)
	cmd := &cobra.Command{
		Use:     "forward --config forward.toml",
		Short:   "Copy the events of topics to other topics (shm to kafka, ...)",
		Long:    forwardLong,
		Example: "  diaspora-shmctl forward --config forward.toml --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New("forward: --config is required")
			}
			text, err := os.ReadFile(config)
			if err != nil {
				return fmt.Errorf("forward: %w", err)
			}
			cfg, err := parseForwardConfig(config, string(text))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return a.runForward(ctx, cfg, interval, batch)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the TOML `file` of drivers and [[forward]] policies")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often progress is shown")
	cmd.Flags().IntVar(&batch, "batch", 256, "events written per transaction, at most")
	return cmd
}

// forwardConfig is a parsed, checked configuration.
type forwardConfig struct {
	drivers  map[string]driverSpec
	policies []policySpec
}

type driverSpec struct {
	name, typ string
	options   map[string]any
	line      int
}

type policySpec struct {
	from, to         endpoint
	fromText, toText string
	line             int
}

type endpoint struct{ driver, topic string }

func (e endpoint) String() string { return e.driver + "/" + e.topic }

// parseForwardConfig decodes and checks the configuration, naming the line
// and key of what is wrong.
func parseForwardConfig(path, text string) (forwardConfig, error) {
	var raw map[string]any
	md, err := toml.Decode(text, &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return forwardConfig{}, fmt.Errorf("forward: %s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return forwardConfig{}, fmt.Errorf("forward: %s: %w", path, err)
	}
	_ = md
	lines := tomlLines(text)
	bad := func(section string, index int, key, format string, args ...any) error {
		return fmt.Errorf("forward: %s:%d: %s", path, lines.find(section, index, key), fmt.Sprintf(format, args...))
	}
	cfg := forwardConfig{drivers: map[string]driverSpec{}}
	for k := range raw {
		if k != "drivers" && k != "forward" {
			return cfg, bad(k, 0, "", "unknown key %q (want [drivers.NAME] tables and [[forward]] entries)", k)
		}
	}
	drivers, ok := raw["drivers"].(map[string]any)
	if !ok && raw["drivers"] != nil {
		return cfg, bad("drivers", 0, "", "drivers: want [drivers.NAME] tables")
	}
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tbl, ok := drivers[n].(map[string]any)
		if !ok {
			return cfg, bad("drivers", 0, n, "drivers.%s: want a table", n)
		}
		typ, _ := tbl["type"].(string)
		if typ != "shm" && typ != "kafka" {
			return cfg, bad("drivers."+n, 0, "type", "drivers.%s.type %v: want \"shm\" or \"kafka\"", n, tbl["type"])
		}
		opts := map[string]any{}
		for k, v := range tbl {
			if k != "type" {
				opts[k] = v
			}
		}
		cfg.drivers[n] = driverSpec{name: n, typ: typ, options: opts, line: lines.find("drivers."+n, 0, "type")}
	}
	entries, ok := raw["forward"].([]map[string]any)
	if !ok {
		return cfg, bad("", 0, "", "no [[forward]] entry")
	}
	for i, e := range entries {
		p := policySpec{line: lines.find("forward", i+1, "")}
		for k := range e {
			if k != "from" && k != "to" {
				why := ""
				if k == "data_selector" || k == "data_allocator" {
					why = ": plug-in libraries are not supported; events are forwarded whole"
				}
				return cfg, bad("forward", i+1, k, "[[forward]] %d: unknown key %q%s", i+1, k, why)
			}
		}
		for _, side := range []string{"from", "to"} {
			v, _ := e[side].(string)
			d, t, ok := strings.Cut(v, "/")
			if !ok || d == "" || t == "" || strings.Contains(t, "/") {
				return cfg, bad("forward", i+1, side, "[[forward]] %d: %s = %q: want \"driver/topic\"", i+1, side, v)
			}
			if _, known := cfg.drivers[d]; !known {
				return cfg, bad("forward", i+1, side, "[[forward]] %d: %s = %q: no [drivers.%s]", i+1, side, v, d)
			}
			if side == "from" {
				p.from, p.fromText = endpoint{d, t}, v
			} else {
				p.to, p.toText = endpoint{d, t}, v
			}
		}
		if p.from == p.to {
			return cfg, bad("forward", i+1, "to", "[[forward]] %d: from and to are both %q", i+1, p.fromText)
		}
		cfg.policies = append(cfg.policies, p)
	}
	return cfg, nil
}

// tomlLineIndex locates keys in the text for error messages: the line of a
// key in the index-th [[section]] (index 0 for a [section] table).
type tomlLineIndex struct {
	keys    map[string]int // "section#index.key" -> line
	headers map[string]int // "section#index" -> line
}

func tomlLines(text string) tomlLineIndex {
	ix := tomlLineIndex{keys: map[string]int{}, headers: map[string]int{}}
	section, count := "", map[string]int{}
	cur := "#0"
	for i, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "[["):
			section = strings.TrimSpace(strings.Trim(l, "[]"))
			count[section]++
			cur = fmt.Sprintf("%s#%d", section, count[section])
			ix.headers[cur] = i + 1
		case strings.HasPrefix(l, "["):
			section = strings.TrimSpace(strings.Trim(l, "[]"))
			// [drivers.remote.kafka] belongs to drivers.remote.
			if parts := strings.Split(section, "."); len(parts) > 2 && parts[0] == "drivers" {
				section = parts[0] + "." + parts[1]
			}
			cur = section + "#0"
			if _, seen := ix.headers[cur]; !seen {
				ix.headers[cur] = i + 1
			}
		case strings.Contains(l, "=") && !strings.HasPrefix(l, "#"):
			k := strings.Trim(strings.TrimSpace(l[:strings.Index(l, "=")]), `"'`)
			if _, seen := ix.keys[cur+"."+k]; !seen {
				ix.keys[cur+"."+k] = i + 1
			}
		}
	}
	return ix
}

func (ix tomlLineIndex) find(section string, index int, key string) int {
	at := fmt.Sprintf("%s#%d", section, index)
	if key != "" {
		if l, ok := ix.keys[at+"."+key]; ok {
			return l
		}
	}
	if l, ok := ix.headers[at]; ok {
		return l
	}
	return 1
}

// testAckDelay widens, for the tests, the moment between a batch's write
// and its acknowledgement at the source, where a kill leaves events at the
// destination that the source will deliver again.
var testAckDelay, _ = time.ParseDuration(os.Getenv("DSHM_TEST_FORWARD_ACK_DELAY"))

// maxBatchBytes bounds the data of one batch (one transaction).
const maxBatchBytes = 16 << 20

// policyStats is what a policy shows.
type policyStats struct {
	forwarded, skipped atomic.Int64
}

func (a *app) runForward(ctx context.Context, cfg forwardConfig, interval time.Duration, batch int) error {
	// Open every driver and every topic first: a missing one is an error
	// at start, naming its line.
	open := map[string]diaspora.Driver{}
	defer func() {
		for _, d := range open {
			d.Close()
		}
	}()
	for name, spec := range cfg.drivers {
		b, err := json.Marshal(spec.options)
		if err != nil {
			return fmt.Errorf("forward: line %d: drivers.%s: %w", spec.line, name, err)
		}
		md, err := diaspora.NewMetadata(string(b))
		if err != nil {
			return fmt.Errorf("forward: line %d: drivers.%s: %w", spec.line, name, err)
		}
		d, err := diaspora.NewDriver(spec.typ, md)
		if err != nil {
			return fmt.Errorf("forward: line %d: drivers.%s: %w", spec.line, name, err)
		}
		open[name] = d
	}
	runs := make([]*policyRun, len(cfg.policies))
	for i, p := range cfg.policies {
		r, err := a.startPolicy(open, cfg, p, batch)
		if err != nil {
			for _, r := range runs[:i] {
				r.close()
			}
			return fmt.Errorf("forward: line %d: [[forward]] %s -> %s: %w", p.line, p.fromText, p.toText, err)
		}
		runs[i] = r
	}
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.run(ctx)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	start := time.Now()
	last := make([]int64, len(runs))
	show := func(final bool) {
		for i, r := range runs {
			n, s := r.stats.forwarded.Load(), r.stats.skipped.Load()
			rate := float64(n-last[i]) / interval.Seconds()
			if final {
				rate = float64(n) / time.Since(start).Seconds()
			}
			last[i] = n
			lag, hasLag := r.lag()
			if a.jsonOut {
				line := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "from": r.p.fromText, "to": r.p.toText,
					"forwarded": n, "skipped": s, "events_per_s": rate, "done": final}
				if hasLag {
					line["lag"] = lag
				}
				b, _ := json.Marshal(line)
				fmt.Fprintln(a.stdout, string(b))
			} else if final || a.stderrIsTerminal() {
				lagText := ""
				if hasLag {
					lagText = fmt.Sprintf(", lag %d", lag)
				}
				fmt.Fprintf(a.stderr, "forward %s -> %s: %d events forwarded (%.0f/s)%s, %d already there\n", r.p.fromText, r.p.toText, n, rate, lagText, s)
			}
		}
	}
	for {
		select {
		case <-ticker.C:
			show(false)
		case <-done:
			show(true)
			for _, r := range runs {
				r.close()
			}
			return errors.Join(errs...)
		}
	}
}

// policyRun is one [[forward]] entry at work.
type policyRun struct {
	p      policySpec
	stats  policyStats
	batch  int
	cons   diaspora.Consumer
	nsrc   int
	sink   *kafka.Sink       // a kafka destination
	prod   diaspora.Producer // any other
	ndst   int
	last   map[int]uint64 // the last event of each source partition already at the destination
	source string         // what the source is, wherever the config runs: the origin of its records
}

// identity names a topic by what it is rather than by the config's names
// for its driver: an shm topic by its host and root directory (shm topics
// are a node's), a kafka topic by its cluster and namespace.
func identity(d diaspora.Driver, topic string) string {
	switch x := d.Interface().(type) {
	case *kafka.Driver:
		return x.Identity() + "/" + topic
	case interface{ RootPath() string }:
		host, _ := os.Hostname()
		return "shm://" + host + x.RootPath() + "/" + topic
	}
	return "unknown:///" + topic
}

func consumerNameFor(to endpoint) string {
	return "forward." + strings.NewReplacer("/", ".", "\\", ".").Replace(to.String())
}

func (a *app) startPolicy(open map[string]diaspora.Driver, cfg forwardConfig, p policySpec, batch int) (*policyRun, error) {
	src, err := open[p.from.driver].OpenTopic(p.from.topic)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	r := &policyRun{p: p, batch: max(batch, 1), nsrc: len(src.Partitions()), last: map[int]uint64{},
		source: identity(open[p.from.driver], p.from.topic)}
	if inc, ok := src.Interface().(interface{ Incarnation() string }); ok && inc.Incarnation() != "" {
		// A source topic made again under its name starts its IDs again:
		// what was forwarded from the old one says nothing of it.
		r.source += "@" + inc.Incarnation()
	}
	dd := open[p.to.driver]
	if kd, ok := dd.Interface().(*kafka.Driver); ok {
		// The transactional ID is the policy's, by what it reads and
		// writes rather than by the config's names: a forwarder of it on
		// another host, or a second one here, fences this one.
		sink, err := kd.OpenSink(p.to.topic, "diaspora-forward:"+r.source+">"+identity(dd, p.to.topic))
		if err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		r.sink, r.ndst = sink, sink.Partitions()
		if r.last, err = sink.LastForwarded(r.source, r.nsrc); err != nil {
			sink.Close()
			return nil, fmt.Errorf("to: %w", err)
		}
	} else {
		dst, err := dd.OpenTopic(p.to.topic)
		if err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		if r.prod, err = dst.Producer(consumerNameFor(p.to)); err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		r.ndst = len(dst.Partitions())
		fmt.Fprintf(a.stderr, "diaspora-shmctl: warning: forward %s -> %s: to a %s topic events are forwarded at least once (exactly once needs a kafka destination)\n",
			p.fromText, p.toText, cfg.drivers[p.to.driver].typ)
	}
	r.cons, err = src.Consumer(consumerNameFor(p.to), diaspora.FullDataSelector)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("from: %w", err)
	}
	return r, nil
}

// lag is how many source events the policy has not acknowledged, when
// the source's driver can say.
func (r *policyRun) lag() (uint64, bool) {
	l, ok := r.cons.Interface().(interface{ Lag() (uint64, error) })
	if !ok {
		return 0, false
	}
	n, err := l.Lag()
	return n, err == nil
}

func (r *policyRun) close() {
	if r.cons.Valid() {
		r.cons.Close()
	}
	if r.sink != nil {
		r.sink.Close()
	}
	if r.prod.Valid() {
		r.prod.Close()
	}
}

// run forwards until ctx ends or the source's stream does: events are read
// into a batch, written (one transaction to kafka), and only then
// acknowledged at the source.
func (r *policyRun) run(ctx context.Context) error {
	var (
		pending      []diaspora.Event
		parts        []int
		pendingBytes int
	)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := r.write(pending, parts); err != nil {
			return err
		}
		if testAckDelay > 0 {
			time.Sleep(testAckDelay) // the window a kill between write and acknowledgement hits
		}
		// The last event of each partition acknowledges those before it.
		lastOf := map[int]diaspora.Event{}
		for i, ev := range pending {
			lastOf[parts[i]] = ev
		}
		for _, ev := range lastOf {
			if err := ev.Acknowledge(); err != nil {
				return fmt.Errorf("acknowledge at the source: %w", err)
			}
		}
		r.stats.forwarded.Add(int64(len(pending)))
		clear(pending)
		pending, parts = pending[:0], parts[:0]
		return nil
	}
	for {
		if ctx.Err() != nil {
			return flush()
		}
		ev, err := r.cons.Pull().Wait(20 * time.Millisecond)
		if errors.Is(err, diaspora.ErrTimeout) {
			pendingBytes = 0
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return errors.Join(flush(), fmt.Errorf("from %s: %w", r.p.fromText, err))
		}
		if ev.ID() == diaspora.NoMoreEvents {
			return flush()
		}
		p := partitionOf(ev)
		if last, ok := r.last[p]; ok && ev.ID() <= last {
			// Already at the destination (written before a kill, not yet
			// acknowledged): acknowledge it, do not write it again.
			r.stats.skipped.Add(1)
			if err := ev.Acknowledge(); err != nil {
				return fmt.Errorf("acknowledge at the source: %w", err)
			}
			continue
		}
		pending, parts = append(pending, ev), append(parts, p)
		pendingBytes += ev.Data().Size()
		// A batch is bounded in bytes too: its events hold the source's
		// ring space until they are acknowledged.
		if len(pending) >= r.batch || pendingBytes >= maxBatchBytes {
			pendingBytes = 0
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

func (r *policyRun) write(evs []diaspora.Event, parts []int) error {
	if r.sink != nil {
		fw := make([]kafka.Forwarded, len(evs))
		for i, ev := range evs {
			fw[i] = kafka.Forwarded{Origin: kafka.Origin{Source: r.source, Partition: parts[i], ID: ev.ID()},
				Metadata: ev.Metadata(), Data: ev.Data()}
		}
		return r.sink.Write(fw)
	}
	futures := make([]diaspora.Future[diaspora.EventID], len(evs))
	for i, ev := range evs {
		futures[i] = r.prod.PushTo(parts[i]%r.ndst, ev.Metadata(), ev.Data())
	}
	for _, f := range futures {
		if _, err := f.Wait(-1); err != nil {
			return fmt.Errorf("to %s: %w", r.p.toText, err)
		}
	}
	return nil
}
