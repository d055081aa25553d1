package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

// A zero-copy consumer that holds so many unacknowledged events that its
// producer process cannot write the next is told at once by its Pull,
// with what it holds and what to do; the producer's error names it; after
// it acknowledges, the stream goes on.
func TestZeroCopyConsumerHoldingTheRingIsToldAtOnce(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "t", `{"ring_size":"64KiB","durability":"none","push_timeout":"3s"}`)
	var prod collected
	pp := spawn(t, "producer", "p", 0, []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t", "DSHM_PAUSE_US=0", "DSHM_WINDOW=4"}, nil, prod.add)
	defer pp.kill()
	d := env.driver(t)
	defer d.Close()
	th, err := d.OpenTopic("t")
	if err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("holder", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	var held []diaspora.Event
	var holdErr error
	deadline := time.Now().Add(30 * time.Second)
	for holdErr == nil && time.Now().Before(deadline) {
		start := time.Now()
		ev, err := c.Pull().Wait(20 * time.Second)
		switch {
		case err == nil:
			held = append(held, ev)
		case errors.Is(err, driver.ErrHoldsRing):
			holdErr = err
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the Pull that found the ring held by its own events took %v", took)
			}
		default:
			t.Fatalf("pull %d: %v", len(held), err)
		}
	}
	if holdErr == nil {
		t.Fatal("the consumer was never told it holds the ring")
	}
	t.Logf("after %d events: %v", len(held), holdErr)
	for _, want := range []string{`"holder"`, "bytes", "65536", "acknowledge"} {
		if !strings.Contains(holdErr.Error(), want) {
			t.Errorf("error %q does not say %q", holdErr, want)
		}
	}
	waitFor(t, 10*time.Second, "the producer's push fails naming the consumer", func() bool { return prod.find("fail", `"holder"`) != "" })
	t.Logf("producer: %s", prod.find("fail", `"holder"`))
	if err := held[len(held)-1].Acknowledge(); err != nil {
		t.Fatal(err)
	}
	before := prod.count("done ")
	waitFor(t, 10*time.Second, "pushes complete again after the acknowledgement", func() bool { return prod.count("done ") > before })
	if _, err := c.Pull().Wait(10 * time.Second); err != nil {
		t.Fatalf("pull after the acknowledgement: %v", err)
	}
}
