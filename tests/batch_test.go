package tests

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// streamLog collects what producer and consumer processes report.
type streamLog struct {
	mu    sync.Mutex
	done  map[[2]uint64]string // (partition, id) -> "name/inc/seq crc" of a completed push
	got   map[[2]uint64]int    // (partition, id) -> times received
	gotAs map[[2]uint64]string
	last  map[uint64]uint64 // partition -> last ID received
	bad   []string
}

func newStreamLog() *streamLog {
	return &streamLog{done: map[[2]uint64]string{}, got: map[[2]uint64]int{}, gotAs: map[[2]uint64]string{}, last: map[uint64]uint64{}}
}

func (l *streamLog) handle(p *proc, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := strings.Fields(line)
	var part, id uint64
	switch {
	case len(f) == 7 && f[0] == "done":
		fmt.Sscan(f[1], &part)
		fmt.Sscan(f[2], &id)
		l.done[[2]uint64{part, id}] = f[3] + "/" + f[4] + "/" + f[5] + " " + f[6]
	case len(f) == 8 && f[0] == "got":
		fmt.Sscan(f[1], &part)
		fmt.Sscan(f[2], &id)
		k := [2]uint64{part, id}
		if prev, ok := l.last[part]; ok && id <= prev {
			l.bad = append(l.bad, fmt.Sprintf("%s: partition %d: event %d after event %d", p, part, id, prev))
		}
		l.last[part] = id
		l.got[k]++
		l.gotAs[k] = f[3] + "/" + f[4] + "/" + f[5] + " " + f[6]
		if f[7] != "true" {
			l.bad = append(l.bad, fmt.Sprintf("%s: damaged: %s", p, line))
		}
	case f[0] == "fail" || f[0] == "error":
		l.bad = append(l.bad, fmt.Sprintf("%s: %s", p, line))
	}
}

// Several producer processes stream batches into the small rings of a
// topic while a consumer process reads them: batches wrap the end of the
// ring and wait for free space all the time (a 64 KiB ring holds a few
// batches), they interleave (IDs strictly increase per partition), one
// producer uses a fixed BatchSize and two mix Claim with Push on the same
// partitions, and every completed push arrives exactly once, intact.
func TestBatchedProducersInterleaveAcrossProcesses(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "b", `{"num_partitions":2,"ring_size":"64KiB","durability":"none"}`)
	log := newStreamLog()
	base := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=b", "DSHM_PAUSE_US=0", "DSHM_WINDOW=64"}
	const perProducer = 1500
	cons := spawn(t, "consumer", "c", 0, append(base, fmt.Sprintf("DSHM_MAX=%d", 3*perProducer), "DSHM_ACK_EVERY=50"), nil, log.handle)
	time.Sleep(100 * time.Millisecond) // attached before the first push: it reads from the start
	prods := []*proc{
		spawn(t, "producer", "p0", 0, append(base, fmt.Sprintf("DSHM_MAX=%d", perProducer)), nil, log.handle),
		spawn(t, "producer", "p1", 0, append(base, fmt.Sprintf("DSHM_MAX=%d", perProducer), "DSHM_BATCH=16", "DSHM_CLAIM_EVERY=5"), nil, log.handle),
		spawn(t, "producer", "p2", 0, append(base, fmt.Sprintf("DSHM_MAX=%d", perProducer), "DSHM_CLAIM_EVERY=3"), nil, log.handle),
	}
	for _, p := range prods {
		if err := p.waitExit(60 * time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", p, err, tail(p.stderr.String(), 20))
		}
	}
	if err := cons.waitExit(60 * time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", cons, err, tail(cons.stderr.String(), 20))
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, b := range log.bad {
		t.Error(b)
	}
	if len(log.done) != 3*perProducer {
		t.Errorf("%d pushes completed, want %d", len(log.done), 3*perProducer)
	}
	for k, what := range log.done {
		switch n := log.got[k]; {
		case n == 0:
			t.Errorf("partition %d event %d (%s) never arrived", k[0], k[1], what)
		case n > 1:
			t.Errorf("partition %d event %d arrived %d times", k[0], k[1], n)
		case log.gotAs[k] != what:
			t.Errorf("partition %d event %d arrived as %s, was pushed as %s", k[0], k[1], log.gotAs[k], what)
		}
	}
	for k := range log.got {
		if _, ok := log.done[k]; !ok {
			t.Errorf("partition %d event %d arrived but no push completed with that ID", k[0], k[1])
		}
	}
}

// A consumer that stops a for range Events loop in the middle of a batch,
// and then calls Pull, gets the next event: none lost, none twice. The
// events come from a producer process, in batches; the consumer breaks at
// random points, alternating Events, Pull and Process, for a zero-copy
// consumer and for one with an allocator (whose events are built when
// handed out).
func TestBreakingOutOfEventsMidBatchLosesNothing(t *testing.T) {
	for _, mode := range []string{"zerocopy", "allocator", "metadata"} {
		t.Run(mode, func(t *testing.T) {
			env := newFaultEnv(t)
			env.createTopic(t, "e", `{"num_partitions":1,"ring_size":"1MiB","durability":"none"}`)
			const n = 3000
			d := env.driver(t)
			defer d.Close()
			th, err := d.OpenTopic("e")
			if err != nil {
				t.Fatal(err)
			}
			var args []diaspora.Arg
			switch mode {
			case "zerocopy":
				args = append(args, diaspora.FullDataSelector)
			case "allocator":
				args = append(args, diaspora.FullDataSelector, diaspora.BytesAllocator)
			}
			c, err := th.Consumer("c", args...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			log := newStreamLog()
			p := spawn(t, "producer", "p", 0, []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=e", "DSHM_PAUSE_US=0",
				"DSHM_WINDOW=128", fmt.Sprintf("DSHM_MAX=%d", n)}, nil, log.handle)
			rng := seedFor(t)
			next := uint64(0)
			take := func(ev diaspora.Event, how string) {
				t.Helper()
				if ev.ID() != next {
					t.Fatalf("%s returned event %d, want %d", how, ev.ID(), next)
				}
				if mode != "metadata" {
					if _, _, err := checkEvent(ev); err != nil {
						t.Fatalf("%s: %v", how, err)
					}
				}
				next++
				if next%200 == 0 {
					if err := ev.Acknowledge(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for round := 0; next < n; round++ {
				rng = rng*6364136223846793005 + 1442695040888963407
				stopAfter := 1 + int(uint64(rng)>>33)%150
				switch round % 3 {
				case 0:
					k := 0
					for ev, err := range c.Events(10 * time.Second) {
						if err != nil {
							t.Fatalf("Events: %v", err)
						}
						take(ev, "Events")
						if k++; k == stopAfter || next == n {
							break
						}
					}
				case 1:
					k := 0
					err := c.Process(func(ev diaspora.Event) error {
						take(ev, "Process")
						if k++; k == stopAfter {
							return diaspora.ErrStopProcessing
						}
						return nil
					}, 10*time.Second, diaspora.NumEvents(min(stopAfter*2, n-int(next))), diaspora.ThreadPool{})
					if err != nil {
						t.Fatalf("Process: %v", err)
					}
				}
				if next < n {
					ev, err := c.Pull().Wait(10 * time.Second)
					if err != nil {
						t.Fatalf("Pull after breaking out at event %d: %v", next, err)
					}
					take(ev, "Pull after a break")
				}
			}
			if err := p.waitExit(30 * time.Second); err != nil {
				t.Fatalf("%s: %v\n%s", p, err, tail(p.stderr.String(), 20))
			}
			if ev, err := c.Pull().Wait(100 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
				t.Fatalf("after all %d events, Pull gave event %d, %v", n, ev.ID(), err)
			}
		})
	}
}
