package driver_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// ringPaths lists the ring files (not sidecars) under the driver's shm path.
func ringPaths(t *testing.T, opts diaspora.Metadata) []string {
	t.Helper()
	var o struct {
		Shm string `json:"shm_path"`
	}
	if err := opts.Decode(&o); err != nil {
		t.Fatal(err)
	}
	all, _ := filepath.Glob(filepath.Join(o.Shm, "dshm.*"))
	var out []string
	for _, p := range all {
		if !strings.HasSuffix(p, ".json") && !strings.Contains(p, ".tmp-") {
			out = append(out, p)
		}
	}
	return out
}

// within fails the test if f does not return within d: what is tested
// must never hang.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// A ring truncated under a zero-copy consumer: every entry point gives an
// error or returns, none dies of SIGBUS, and the consumer's lock is never
// left held (Acknowledge's fault used to leave it locked, hanging every
// later Pull and Close).
func TestTruncatedRingEveryEntryPointReturns(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB"}`)
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := p.Push(diaspora.MustMetadata(`{"i":1}`), diaspora.DataView{make([]byte, 100)}).Wait(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := c.Pull().Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rings := ringPaths(t, opts)
	if len(rings) != 1 {
		t.Fatalf("want one ring, got %v", rings)
	}
	if err := os.Truncate(rings[0], 4096); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "Acknowledge", func() {
		if err := ev.Acknowledge(); err == nil {
			t.Log("Acknowledge of an event of a truncated ring: nil (its position is on disk)")
		}
	})
	within(t, 5*time.Second, "Pull().Wait", func() {
		// The two events after the first were taken from the ring with it
		// (one pass delivers a batch); the Pull after them meets the fault.
		for i := 0; ; i++ {
			_, err := c.Pull().Wait(200 * time.Millisecond)
			if err != nil {
				break
			}
			if i == 2 {
				t.Error("Pull on a truncated ring: want an error once the events taken before it are handed out")
				break
			}
		}
	})
	within(t, 5*time.Second, "Push", func() {
		if _, err := p.Push(diaspora.MustMetadata(`{}`), nil).Wait(time.Second); err == nil {
			t.Error("Push into a truncated ring: want an error")
		}
	})
	within(t, 5*time.Second, "Claim", func() {
		if cl, err := p.Claim(diaspora.MustMetadata(`{}`), 10); err == nil {
			cl.Abort()
			t.Error("Claim in a truncated ring: want an error")
		}
	})
	within(t, 5*time.Second, "Flush", func() { p.Flush().Wait(time.Second) })
	if err := os.Truncate(rings[0], 0); err != nil { // the header too, now
		t.Fatal(err)
	}
	within(t, 5*time.Second, "MarkAsComplete", func() {
		if err := th.MarkAsComplete(); err == nil {
			t.Error("MarkAsComplete of a ring truncated to nothing: want an error")
		}
	})
	within(t, 5*time.Second, "Consumer.Close", func() { c.Close() })
	within(t, 5*time.Second, "Producer.Close", func() { p.Close() })
	within(t, 5*time.Second, "Driver.Close", func() { d.Close() })
}

// A selector that fails (or panics) on an event does not lose it: the
// next Pull delivers the same event, and nothing after it comes first.
func TestFailedDeliveryIsDeliveredAgain(t *testing.T) {
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			d, _ := newDriver(t)
			th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
			p, _ := th.Producer("p")
			for i := 0; i < 3; i++ {
				if _, err := p.Push(diaspora.MustMetadata(`{"i":`+string(rune('0'+i))+`}`), diaspora.DataView{[]byte("data")}).Wait(time.Second); err != nil {
					t.Fatal(err)
				}
			}
			failed := false
			sel := diaspora.DataSelector(func(md diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
				if md.Dump() == `{"i":1}` && !failed {
					failed = true
					if mode == "panic" {
						panic("selector bug")
					}
					return diaspora.DataDescriptor{}, errors.New("selector says no")
				}
				return dd, nil
			})
			c, err := th.Consumer("c", sel, diaspora.BytesAllocator)
			if err != nil {
				t.Fatal(err)
			}
			var got []diaspora.EventID
			for len(got) < 3 {
				ev, err := c.Pull().Wait(time.Second)
				if err != nil {
					if !failed || !strings.Contains(err.Error(), "event 1") {
						t.Fatalf("unexpected error %v", err)
					}
					t.Logf("failed delivery: %v", err)
					continue
				}
				got = append(got, ev.ID())
				if err := ev.Acknowledge(); err != nil {
					t.Fatal(err)
				}
			}
			if got[0] != 0 || got[1] != 1 || got[2] != 2 {
				t.Fatalf("want events 0, 1, 2 in order after the failed delivery of 1, got %v", got)
			}
		})
	}
}

// One name is one cursor: a second live consumer of a name on a partition
// is refused while the first is open, and allowed once it closed.
func TestSecondConsumerOfANameIsRefused(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","num_partitions":2}`)
	c1, err := th.Consumer("ana")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := th.Consumer("ana"); !errors.Is(err, diaspora.ErrInvalidArgument) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second consumer of a name: want ErrInvalidArgument naming the holder, got %v", err)
	}
	if _, err := th.Consumer("ana", diaspora.Targets{1}); err == nil {
		t.Fatal("second consumer of a name on partition 1, which the first reads too: want an error")
	}
	other, err := th.Consumer("other")
	if err != nil {
		t.Fatalf("consumer of another name: %v", err)
	}
	other.Close()
	c1.Close()
	c2, err := th.Consumer("ana")
	if err != nil {
		t.Fatalf("consumer of the name after the first closed: %v", err)
	}
	c2.Close()
	split1, err := th.Consumer("split", diaspora.Targets{0})
	if err != nil {
		t.Fatal(err)
	}
	defer split1.Close()
	split2, err := th.Consumer("split", diaspora.Targets{1})
	if err != nil {
		t.Fatalf("consumers of one name on different partitions: %v", err)
	}
	split2.Close()
}

// Zero-copy views kept after their driver closed read zeros; they never
// fault.
func TestZeroCopyViewAfterDriverCloseDoesNotCrash(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB"}`)
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{[]byte("frame bytes")}).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("c", diaspora.FullDataSelector)
	ev, err := c.Pull().Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	view := ev.Data()
	if string(view.Bytes()) != "frame bytes" {
		t.Fatalf("view before close: %q", view.Bytes())
	}
	c.Close()
	d.Close()
	if b := view.Bytes(); string(b) != strings.Repeat("\x00", len("frame bytes")) {
		t.Fatalf("view after the driver closed: want zeros, got %q", b)
	}
}

// After MarkAsComplete no event may be pushed: it would follow the end.
func TestPushAfterMarkAsCompleteIsRefused(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none"}`)
	p, _ := th.Producer("p")
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{}`), nil).Wait(time.Second); err == nil || !strings.Contains(err.Error(), "complete") {
		t.Fatalf("push after MarkAsComplete: want an error saying the topic is complete, got %v", err)
	}
	if _, err := p.Claim(diaspora.MustMetadata(`{}`), 8); err == nil {
		t.Fatal("claim after MarkAsComplete: want an error")
	}
}

// A claim held past claim_timeout: readers move on, its commit fails and
// writes nothing; Close of a producer whose claim is still open says what
// it dropped.
func TestClaimPastClaimTimeout(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB","claim_timeout":"100ms"}`)
	p, _ := th.Producer("p")
	late, err := p.Claim(diaspora.MustMetadata(`{"late":1}`), 8000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"after":1}`), nil).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("c")
	ev, err := c.Pull().Wait(5 * time.Second)
	if err != nil || ev.Metadata().Dump() != `{"after":1}` {
		t.Fatalf("the event after a claim held past claim_timeout: %v %v", ev.Metadata().Dump(), err)
	}
	if _, err := late.Commit().Wait(time.Second); err == nil {
		t.Fatal("commit past claim_timeout: want an error")
	} else {
		t.Logf("late commit: %v", err)
	}
	open, err := p.Claim(diaspora.MustMetadata(`{"open":1}`), 10)
	if err != nil {
		t.Fatal(err)
	}
	_ = open
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "aborted 1 claim") {
		t.Fatalf("Close with a claim still open: want an error saying it aborted 1 claim, got %v", err)
	}
}

// An event too large for the ring is refused with the ring_size that takes
// it; a topic of that size streams it (a 25 MiB reconstruction block).
func TestLargeEventErrorNamesTheRingSizeThatTakesIt(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "small", `{"durability":"none","ring_size":"16MiB"}`)
	p, _ := th.Producer("p")
	block := make([]byte, 25<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	_, err := p.Push(diaspora.MustMetadata(`{"block":1}`), diaspora.DataView{block}).Wait(5 * time.Second)
	if !errors.Is(err, diaspora.ErrInvalidArgument) || !strings.Contains(err.Error(), `"ring_size":"64MiB"`) {
		t.Fatalf("push of 25 MiB into a 16 MiB ring: want ErrInvalidArgument naming ring_size 64MiB, got %v", err)
	}
	if _, err := p.Claim(diaspora.MustMetadata(`{}`), 25<<20); err == nil || !strings.Contains(err.Error(), `"ring_size":"64MiB"`) {
		t.Fatalf("claim of 25 MiB in a 16 MiB ring: want an error naming ring_size 64MiB, got %v", err)
	}
	big := createTopic(t, d, "big", `{"durability":"none","ring_size":"64MiB"}`)
	bp, _ := big.Producer("p")
	c, err := big.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		block[0] = byte(i)
		if _, err := bp.Push(diaspora.MustMetadata(`{"block":1}`), diaspora.DataView{block}).Wait(10 * time.Second); err != nil {
			t.Fatalf("push %d of 25 MiB into a 64 MiB ring: %v", i, err)
		}
		ev, err := c.Pull().Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := ev.Data().Bytes()
		if len(got) != len(block) || got[0] != byte(i) || got[len(got)-1] != block[len(block)-1] {
			t.Fatalf("block %d: %d bytes, first %d", i, len(got), got[0])
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{make([]byte, 600<<20)}).Wait(5 * time.Second); err == nil || !strings.Contains(err.Error(), "no ring_size takes") {
		t.Fatalf("push of 600 MiB: want an error saying no ring_size takes it, got %v", err)
	}
}

// A DataAllocator may hand out one buffer reused for every event (the
// user handles each event before pulling the next): each Pull must fill
// it with that event's data, never with a later one's.
func TestReusedAllocatorBufferHoldsEachPulledEvent(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	p, _ := th.Producer("p")
	for i := 0; i < 200; i++ {
		if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{[]byte{byte(i), byte(i >> 8)}}).Wait(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2)
	reuse := diaspora.DataAllocator(func(diaspora.Metadata, diaspora.DataDescriptor) (diaspora.DataView, error) {
		return diaspora.DataView{buf}, nil
	})
	c, err := th.Consumer("c", diaspora.FullDataSelector, reuse)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		ev, err := c.Pull().Wait(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := int(buf[0]) | int(buf[1])<<8; got != i {
			t.Fatalf("pull %d (event %d): the reused buffer holds event %d's data", i, ev.ID(), got)
		}
	}
}

// panicky serializes like the default one, panics on metadata {"boom":1},
// and returns a fresh slice (not appended to its dst) for {"fresh":1}.
type panicky struct{}

var registerPanicky sync.Once

func (panicky) Serialize(dst []byte, md diaspora.Metadata) ([]byte, error) {
	switch md.Dump() {
	case `{"boom":1}`:
		panic("boom")
	case `{"fresh":1}`: // breaks the append contract: a new slice as long
		return append(make([]byte, len(dst)), md.Bytes()...), nil
	}
	return append(dst, md.Bytes()...), nil
}
func (panicky) Deserialize(src []byte) (diaspora.Metadata, error) {
	return diaspora.MetadataFromBytes(append([]byte(nil), src...))
}
func (panicky) Metadata() diaspora.Metadata { return diaspora.MustMetadata(`{"type":"panicky"}`) }

// A serializer that panics in the middle of staged pushes fails that push
// and leaves the producer working: the writer lock it held is let go.
func TestPanickingSerializerDoesNotWedgeTheProducer(t *testing.T) {
	registerPanicky.Do(func() {
		diaspora.RegisterSerializer("panicky", func(diaspora.Metadata) (diaspora.SerializerInterface, error) { return panicky{}, nil })
	})
	d, _ := newDriver(t)
	th := createTopic(t, d, "panicky", `{"durability":"none"}`, diaspora.NewSerializer(panicky{}))
	pool, err := d.MakeThreadPool(2)
	if err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for k, batch := range []diaspora.BatchSize{diaspora.AdaptiveBatchSize, 8, diaspora.AdaptiveBatchSize} {
		args := []diaspora.Arg{batch}
		if k == 2 {
			args = append(args, pool) // pushes queued by pool threads
		}
		p, err := th.Producer(fmt.Sprint("p", k), args...)
		if err != nil {
			t.Fatal(err)
		}
		var futs []diaspora.Future[diaspora.EventID]
		for i := range 40 {
			md := diaspora.MustMetadata(`{"ok":1}`)
			switch i {
			case 17:
				md = diaspora.MustMetadata(`{"boom":1}`)
			case 23:
				md = diaspora.MustMetadata(`{"fresh":1}`)
			}
			futs = append(futs, p.Push(md, nil))
		}
		for i, f := range futs {
			_, err := f.Wait(5 * time.Second)
			switch {
			case i == 17 && (err == nil || !strings.Contains(err.Error(), "panicked: boom")):
				t.Fatalf("batch %v: the panicking push: %v", batch, err)
			case i == 23 && err != nil && !strings.Contains(err.Error(), "do not begin with"):
				// Staged, it is refused; written alone, its fresh slice
				// is all there is, and it is right.
				t.Fatalf("batch %v: the push whose serializer did not append: %v", batch, err)
			case i != 17 && i != 23 && err != nil:
				t.Fatalf("batch %v: push %d: %v", batch, i, err)
			case i != 17 && err == nil:
				pushed++
			}
		}
		// Alone after a pause: written at once, not staged.
		time.Sleep(10 * time.Millisecond)
		if _, err := p.Push(diaspora.MustMetadata(`{"boom":1}`), nil).Wait(5 * time.Second); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
			t.Fatalf("batch %v: a lone panicking push: %v", batch, err)
		}
		if _, err := p.Push(diaspora.MustMetadata(`{"ok":1}`), nil).Wait(5 * time.Second); err != nil {
			t.Fatalf("batch %v: the push after it: %v", batch, err)
		}
		pushed++
		done := make(chan error, 1)
		go func() { done <- p.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("batch %v: Close hung after a serializer panicked", batch)
		}
	}
	// Everything that was pushed without an error arrived intact.
	c, err := th.Consumer("c")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ev, err := range c.Events(200 * time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.Metadata().Dump(); got != `{"ok":1}` && got != `{"fresh":1}` {
			t.Fatalf("event %d arrived with metadata %s", ev.ID(), got)
		}
		n++
	}
	if n != pushed {
		t.Fatalf("%d events arrived, %d pushes completed", n, pushed)
	}
}

// A for range Events loop whose body panics gives back the rest of its
// batch: after the panic is recovered, Pull returns the next event.
func TestPanicInEventsLoopGivesTheBatchBack(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "evpanic", `{"durability":"none"}`)
	p, err := th.Producer("p", diaspora.BatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p.Push(diaspora.MustMetadata(`{}`), nil)
	}
	if _, err := p.Flush().Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("c")
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		for ev, err := range c.Events(5 * time.Second) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.ID() == 10 {
				panic("body")
			}
		}
	}()
	ev, err := c.Pull().Wait(5 * time.Second)
	if err != nil || ev.ID() != 11 {
		t.Fatalf("Pull after a panic on event 10: event %d, %v; want 11", ev.ID(), err)
	}
}

// A burst of pushes nobody waits on or flushes is still written: the
// producer's linger goroutine writes a stage no push comes to write.
func TestStrandedStageIsWrittenByLinger(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "linger", `{"durability":"none"}`)
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := th.Consumer("c")
	if err != nil {
		t.Fatal(err)
	}
	// Back to back, so they are staged; then no Wait, Flush or push.
	var futs []diaspora.Future[diaspora.EventID]
	for range 50 {
		futs = append(futs, p.Push(diaspora.MustMetadata(`{}`), nil))
	}
	for i := range 50 {
		ev, err := c.Pull().Wait(2 * time.Second)
		if err != nil {
			t.Fatalf("event %d of a burst nobody flushed: %v", i, err)
		}
		if ev.ID() != uint64(i) {
			t.Fatalf("event %d has ID %d", i, ev.ID())
		}
	}
	// The writer completes a batch's futures just after its commit, so a
	// consumer may see the events first: the futures complete soon after,
	// with nobody waiting on them (under load this took longer than the
	// consumer's reads, and the check failed when it was immediate).
	deadline := time.Now().Add(10 * time.Second)
	for i, f := range futs {
		for !f.Completed() {
			if time.Now().After(deadline) {
				t.Fatalf("future %d not completed 10 s after its event arrived", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
