package driver_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

// A fixed batch size on a thread pool: Wait called before the pool ran the
// push finds f.part nil, skips the flush and sleeps on the channel; the pool
// then queues the event (1 < batch size), and nobody ever writes it.
func TestReviewFixedBatchWaitBeforePoolRuns(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	pool, err := d.MakeThreadPool(1)
	if err != nil {
		t.Fatal(err)
	}
	started, block := make(chan struct{}), make(chan struct{})
	pool.PushWork(func() { close(started); <-block }, 0)
	<-started
	p, err := th.Producer("p", pool, diaspora.BatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	f := p.Push(diaspora.MustMetadata(`{"a":1}`), nil)
	go func() { time.Sleep(50 * time.Millisecond); close(block) }()
	if _, err := f.Wait(2 * time.Second); err != nil {
		t.Fatalf("Wait of a push that the pool processed 50ms later: %v", err)
	}
}

// Push (inflight.Add from 0) concurrent with Flush/Close (inflight.Wait):
// WaitGroup misuse, reported by -race, and a possible
// "WaitGroup is reused before previous Wait has returned" panic.
func TestReviewConcurrentPushAndFlush(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	pool, err := d.MakeThreadPool(2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p", pool, diaspora.Loose)
	if err != nil {
		t.Fatal(err)
	}
	md := diaspora.MustMetadata(`{"a":1}`)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.Push(md, nil)
			time.Sleep(time.Microsecond)
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := p.Flush().Wait(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// A zero-copy consumer: Acknowledge calls ring.Reader.Release from the
// acknowledging goroutine while Pull steps the same Reader under c.mu (as
// Process with a thread pool does): a data race on Reader.pos/rel.
func TestReviewZeroCopyAckRacesPull(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := 0; i < n; i++ {
		if _, err := p.Push(diaspora.MustMetadata(`{"a":1}`), diaspora.DataView{[]byte("data")}).Wait(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	evs := make(chan diaspora.Event, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range evs {
			ev.Acknowledge()
		}
	}()
	for i := 0; i < n; i++ {
		ev, err := c.Pull().Wait(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		evs <- ev
	}
	close(evs)
	<-done
}

// A zero-copy consumer whose selector fails on event 1: deliver's error path
// releases the ring up to event 1, freeing event 0, which was delivered but
// not acknowledged; producers overwrite the data the user still holds.
func TestReviewZeroCopyErrorReleasesUnackedEvent(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB"}`)
	sel := diaspora.DataSelector(func(md diaspora.Metadata, desc diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
		var v struct{ Bad bool }
		md.Decode(&v)
		if v.Bad {
			return diaspora.DataDescriptor{}, errors.New("bad event")
		}
		return desc, nil
	})
	c, err := th.Consumer("c", sel)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p", diaspora.MustMetadata(`{"push_timeout":"50ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	push := func(md string, b byte) error {
		_, err := p.Push(diaspora.MustMetadata(md), diaspora.DataView{bytes.Repeat([]byte{b}, 1000)}).Wait(time.Second)
		return err
	}
	if err := push(`{"i":0}`, 'A'); err != nil {
		t.Fatal(err)
	}
	if err := push(`{"bad":true}`, 'X'); err != nil {
		t.Fatal(err)
	}
	ev0, err := c.Pull().Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull().Wait(time.Second); err == nil {
		t.Fatal("selector error not reported")
	}
	for i := 0; i < 200; i++ {
		if push(`{"i":1}`, 'B') != nil {
			break // ring full: event 0 is still pinned, as it should be
		}
	}
	if got := ev0.Data().Bytes(); !bytes.Equal(got, bytes.Repeat([]byte{'A'}, 1000)) {
		t.Fatalf("data of unacknowledged zero-copy event 0 was overwritten: starts %q", got[:8])
	}
}

// A selector that returns a descriptor larger than the event's data: Pull
// panics (slice bounds out of range) instead of returning an error.
func TestReviewSelectorOversizeDescriptorPanics(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	sel := diaspora.DataSelector(func(md diaspora.Metadata, desc diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
		return diaspora.NewDataDescriptor(desc.Location(), 100), nil
	})
	c, err := th.Consumer("c", sel, diaspora.BytesAllocator)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{[]byte("0123456789")}).Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Pull panicked on a bad selector result: %v", r)
		}
	}()
	if _, err := c.Pull().Wait(time.Second); err == nil {
		t.Fatal("no error for a selection past the end of the data")
	}
}

// TopicHandle.MarkAsComplete after Driver.Close writes into the unmapped
// ring without arming SetPanicOnFault: SIGSEGV kills the process. Run in a
// child process.
func TestReviewMarkAsCompleteAfterDriverClose(t *testing.T) {
	if os.Getenv("REVIEW_CHILD") == "1" {
		d, _ := newDriver(t)
		th := createTopic(t, d, "t", `{"durability":"none","ring_size":"64KiB"}`)
		d.Close()
		err := th.MarkAsComplete()
		fmt.Println("returned:", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReviewMarkAsCompleteAfterDriverClose$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REVIEW_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("MarkAsComplete after Driver.Close crashed the process: %v\n%s", err, tail(out))
	}
}

func tail(b []byte) []byte {
	if len(b) > 600 {
		return b[:600]
	}
	return b
}

// TestSyncFutureAfterDriverCloseIsErrClosed: a sync push whose future is
// waited after Driver.Close answers ErrClosed or its ID, without touching
// the unmapped ring.
func TestSyncFutureAfterDriverCloseIsErrClosed(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "late", `{"ring_size":"64KiB","durability":"sync"}`)
	p, _ := th.Producer("p")
	f := p.Push(diaspora.MustMetadata(`{}`), nil)
	g := p.Push(diaspora.MustMetadata(`{}`), nil)
	if _, err := f.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := g.Wait(time.Second); err != nil && !errors.Is(err, diaspora.ErrClosed) {
		t.Fatalf("a sync future waited after Driver.Close: got %v, want its ID or ErrClosed", err)
	}
	g.Completed()
}

// TestRingSidecarIsCheckedBeforeUse: a sidecar in the shared shm directory
// that names a bad topic or a relative root is not believed.
func TestRingSidecarIsCheckedBeforeUse(t *testing.T) {
	shmDir := t.TempDir()
	name := "dshm.000000000000.0000000000000000.0"
	for _, info := range []string{
		`{"root":"/tmp","topic":"../../etc","topic_id":"0000000000000000","partition":0}`,
		`{"root":"relative","topic":"t","topic_id":"0000000000000000","partition":0}`,
		`{"root":"/tmp","topic":"t","topic_id":"short","partition":0}`,
	} {
		if err := os.WriteFile(filepath.Join(shmDir, name+".json"), []byte(info), 0o600); err != nil {
			t.Fatal(err)
		}
		if f := driver.InspectRing(shmDir, name); f.Info != nil {
			t.Errorf("sidecar %s was believed: %+v", info, *f.Info)
		}
	}
}

// TestImplausibleIDLeaseIsAnError: a lease file holding an ID near 2^64
// (damage) is refused when a ring is rebuilt, naming the file, instead of
// starting IDs where they would overflow.
func TestImplausibleIDLeaseIsAnError(t *testing.T) {
	d, opts := newDriver(t)
	createTopic(t, d, "leased", `{"ring_size":"64KiB","durability":"async"}`)
	d.Close()
	var m map[string]string
	opts.Decode(&m)
	lease := filepath.Join(m["root_path"], "topics", "leased", "partitions", "0", "ID_LEASE")
	if err := os.WriteFile(lease, []byte("18446744073709551000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rings, _ := filepath.Glob(filepath.Join(m["shm_path"], "dshm.*"))
	for _, r := range rings {
		os.Remove(r)
	}
	d2, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if _, err := d2.OpenTopic("leased"); err == nil || !strings.Contains(err.Error(), "ID_LEASE") {
		t.Fatalf("rebuilding a ring over a damaged ID lease: got %v, want an error naming ID_LEASE", err)
	}
}
