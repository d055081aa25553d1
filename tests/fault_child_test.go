package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// The child side. A child reads its parameters from the environment and
// reports one fact per stdout line, each written with one write(2), so that
// a SIGKILL never leaves half a line and every line written is a fact:
//
//	done <partition> <id> <producer> <inc> <seq> <crc>   a push's future completed
//	fail <seq> <error>                                  a push's future failed
//	got <partition> <id> <producer> <inc> <seq> <crc> <ok> an event was received
//	acked <partition> <id>                              Acknowledge returned nil
//	error <text>                                        an operation failed
//	closed                                              a clean stop finished

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func say(format string, args ...any) {
	os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
}

func runFaultChild(role string) int {
	lifetime := time.Duration(envInt("DSHM_LIFETIME_MS", 120_000)) * time.Millisecond
	time.AfterFunc(lifetime, func() {
		fmt.Fprintf(os.Stderr, "child %s %s: still running after its lifetime of %v: hung\n", role, os.Getenv("DSHM_NAME"), lifetime)
		os.Exit(4)
	})
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()

	opts, err := diaspora.NewMetadata(os.Getenv("DSHM_OPTS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	name := os.Getenv("DSHM_NAME")
	inc := envInt("DSHM_INC", 0)
	seed := uint64(envInt("DSHM_SEED", 1))
	rng := rand.New(rand.NewPCG(seed, uint64(inc)+1))
	if role == "intruder" {
		return runIntruder(opts)
	}
	if role == "create" {
		// Creates DSHM_TOPIC with the options DSHM_TOPIC_OPTS.
		d, err := diaspora.NewDriver("shm", opts)
		if err == nil {
			err = d.CreateTopic(os.Getenv("DSHM_TOPIC"), diaspora.MustMetadata(os.Getenv("DSHM_TOPIC_OPTS")))
			d.Close()
		}
		if err != nil {
			say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
			return 2
		}
		say("closed")
		return 0
	}
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		say("error %v", err)
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer d.Close()
	th, err := d.OpenTopic(os.Getenv("DSHM_TOPIC"))
	if err != nil {
		say("error %v", err)
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch role {
	case "producer":
		// Pushes windows of DSHM_WINDOW events to partition seq%npart,
		// waits for each, reports each, pauses DSHM_PAUSE_US.
		npart := len(th.Partitions())
		window := envInt("DSHM_WINDOW", 16)
		pause := time.Duration(envInt("DSHM_PAUSE_US", 2000)) * time.Microsecond
		maxPush := envInt("DSHM_MAX", 0)
		// DSHM_BATCH: the producer's BatchSize (default adaptive);
		// DSHM_CLAIM_EVERY: every so many events go through Claim.
		claimEvery := envInt("DSHM_CLAIM_EVERY", 0)
		batch := diaspora.AdaptiveBatchSize
		if b := envInt("DSHM_BATCH", 0); b > 0 {
			batch = diaspora.BatchSize(b)
		}
		p, err := th.Producer(name, batch)
		if err != nil {
			say("error %v", err)
			return 2
		}
		type pending struct {
			seq, part int
			f         diaspora.Future[diaspora.EventID]
		}
		seq := 0
		for !stop.Load() && (maxPush == 0 || seq < maxPush) {
			var win []pending
			for k := 0; k < window && (maxPush == 0 || seq < maxPush); k++ {
				part := seq % npart
				var f diaspora.Future[diaspora.EventID]
				if claimEvery > 0 && seq%claimEvery == claimEvery-1 {
					f = claimEvent(p, part, name, inc, seq)
				} else {
					f = p.PushTo(part, payloadMeta(name, inc, seq), diaspora.DataView{payload(name, inc, seq)})
				}
				win = append(win, pending{seq, part, f})
				seq++
			}
			for _, w := range win {
				id, err := w.f.Wait(20 * time.Second)
				if err != nil {
					say("fail %d %s", w.seq, strings.ReplaceAll(err.Error(), "\n", " "))
					continue
				}
				say("done %d %d %s %d %d %08x", w.part, id, name, inc, w.seq, crcOf(payload(name, inc, w.seq)))
			}
			if pause > 0 {
				time.Sleep(time.Duration(rng.Int64N(int64(2 * pause))))
			}
		}
		if err := p.Close(); err != nil {
			say("error close: %v", err)
			return 3
		}
		if err := d.Close(); err != nil {
			say("error driver close: %v", err)
			return 3
		}
		say("closed")
	case "consumer":
		// Pulls, checks and reports every event; acknowledges one in
		// DSHM_ACK_EVERY (at random). With DSHM_MAX it stops after that
		// many events; with DSHM_ERR_EXIT an error ends it.
		ackEvery := envInt("DSHM_ACK_EVERY", 3)
		maxEv := envInt("DSHM_MAX", 0)
		errExit := os.Getenv("DSHM_ERR_EXIT") != ""
		args := []diaspora.Arg{diaspora.FullDataSelector, diaspora.BytesAllocator}
		if o := os.Getenv("DSHM_CONSUMER_OPTS"); o != "" {
			args = append(args, diaspora.MustMetadata(o))
		}
		c, err := th.Consumer(name, args...)
		if err != nil {
			say("error %v", err)
			return 2
		}
		n := 0
		for !stop.Load() && (maxEv == 0 || n < maxEv) {
			ev, err := c.Pull().Wait(200 * time.Millisecond)
			if errors.Is(err, diaspora.ErrTimeout) {
				continue
			}
			if err != nil {
				say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
				if errExit {
					return 3
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if ev.ID() == diaspora.NoMoreEvents {
				break
			}
			n++
			k, crc, cerr := checkEvent(ev)
			say("got %d %d %s %d %d %08x %t", partitionOf(ev), ev.ID(), orDash(k.P), k.Inc, k.Seq, crc, cerr == nil)
			if ackEvery > 0 && rng.IntN(ackEvery) == 0 {
				if err := ev.Acknowledge(); err != nil {
					say("error ack %d: %s", ev.ID(), strings.ReplaceAll(err.Error(), "\n", " "))
					if errExit {
						return 3
					}
				} else {
					say("acked %d %d", partitionOf(ev), ev.ID())
				}
			}
		}
		if err := c.Close(); err != nil {
			say("error close: %v", err)
			return 3
		}
		if err := d.Close(); err != nil {
			say("error driver close: %v", err)
			return 3
		}
		say("closed")
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 2
	}
	return 0
}

// claimEvent writes event seq with Claim and Commit, in place.
func claimEvent(p diaspora.Producer, part int, name string, inc, seq int) diaspora.Future[diaspora.EventID] {
	data := payload(name, inc, seq)
	c, err := p.ClaimTo(part, payloadMeta(name, inc, seq), len(data))
	if err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, err)
	}
	copy(c.Bytes(), data)
	return c.Commit()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runIntruder runs as another user: it tries to use the topic through the
// API and to open each of DSHM_FILES (colon separated) for reading and for
// writing, and reports "allowed <what>" or "refused <what>: <error>".
func runIntruder(opts diaspora.Metadata) int {
	try := func(what string, err error) {
		if err != nil {
			say("refused %s: %s", what, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			say("allowed %s", what)
		}
	}
	for _, f := range strings.Split(os.Getenv("DSHM_FILES"), ":") {
		if f == "" {
			continue
		}
		fh, err := os.Open(f)
		if err == nil {
			buf := make([]byte, 64)
			_, err = fh.Read(buf)
			fh.Close()
		}
		try("read "+f, err)
		fh, err = os.OpenFile(f, os.O_WRONLY, 0)
		if err == nil {
			fh.Close()
		}
		try("write "+f, err)
	}
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		try("driver", err)
		return 0
	}
	defer d.Close()
	th, err := d.OpenTopic(os.Getenv("DSHM_TOPIC"))
	if err != nil {
		try("open topic", err)
		return 0
	}
	try("open topic", nil)
	if p, err := th.Producer("intruder"); err != nil {
		try("push", err)
	} else {
		_, err := p.Push(diaspora.MustMetadata(`{"evil":1}`), nil).Wait(3 * time.Second)
		try("push", err)
	}
	if c, err := th.Consumer("intruder"); err != nil {
		try("pull", err)
	} else {
		_, err := c.Pull().Wait(time.Second)
		try("pull", err)
	}
	return 0
}
