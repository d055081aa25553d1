// Package conformance holds the behaviour every driver of the API must
// have, as one table of tests run against each driver: "shm" on fresh
// directories and "kafka" on a Kafka-protocol cluster inside the test
// (kfake), or the brokers of KAFKA_BROKERS. A difference between the
// drivers is a failing test.
package conformance

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver"
	_ "github.com/diaspora-shm/diaspora/kafka"
)

// backend opens a fresh driver of one kind for one test.
type backend struct {
	name string
	open func(t *testing.T) diaspora.Driver
}

var seq atomic.Int64

func backends() []backend {
	return []backend{
		{"shm", func(t *testing.T) diaspora.Driver {
			shmDir, err := os.MkdirTemp("/dev/shm", "dshm-conf-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(shmDir) })
			return openDriver(t, "shm", fmt.Sprintf(`{"root_path": %q, "shm_path": %q}`, t.TempDir(), shmDir))
		}},
		{"kafka", func(t *testing.T) diaspora.Driver {
			brokers := os.Getenv("KAFKA_BROKERS")
			if brokers == "" {
				c, err := kfake.NewCluster(kfake.NumBrokers(1))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(c.Close)
				brokers = strings.Join(c.ListenAddrs(), ",")
			}
			ns := fmt.Sprintf("conf%d-%d", time.Now().UnixNano(), seq.Add(1))
			return openDriver(t, "kafka", fmt.Sprintf(`{"kafka": {"bootstrap.servers": %q}, "namespace": %q}`, brokers, ns))
		}},
	}
}

func openDriver(t *testing.T, name, options string) diaspora.Driver {
	t.Helper()
	d, err := diaspora.NewDriver(name, diaspora.MustMetadata(options))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run runs a behaviour against every backend.
func run(t *testing.T, behaviour func(t *testing.T, d diaspora.Driver)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { behaviour(t, b.open(t)) })
	}
}

// must(f())(t) is f's value, or the test's end with f's error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func topicWith(t *testing.T, d diaspora.Driver, name string, partitions int, args ...diaspora.TopicArg) diaspora.TopicHandle {
	t.Helper()
	args = append([]diaspora.TopicArg{diaspora.MustMetadata(fmt.Sprintf(`{"num_partitions": %d}`, partitions))}, args...)
	if err := d.CreateTopic(name, args...); err != nil {
		t.Fatal(err)
	}
	return must(d.OpenTopic(name))(t)
}

func md(format string, args ...any) diaspora.Metadata {
	return diaspora.MustMetadata(fmt.Sprintf(format, args...))
}

func partitionOf(t *testing.T, ev diaspora.Event) int {
	t.Helper()
	var p struct{ ID int }
	if err := ev.Partition().Decode(&p); err != nil {
		t.Fatalf("event %d: partition info %s: %v", ev.ID(), ev.Partition().Metadata, err)
	}
	return p.ID
}

func TestTopics(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		v := must(diaspora.ValidatorFromMetadata(diaspora.MustMetadata(`{"type": "schema", "schema": {"type": "object"}}`)))(t)
		if err := d.CreateTopic("alpha", diaspora.MustMetadata(`{"num_partitions": 3}`), v); err != nil {
			t.Fatal(err)
		}
		if err := d.CreateTopic("alpha"); !errors.Is(err, diaspora.ErrTopicExists) {
			t.Fatalf("a second create: %v, want ErrTopicExists", err)
		}
		if _, err := d.OpenTopic("beta"); !errors.Is(err, diaspora.ErrTopicNotFound) {
			t.Fatalf("open of a missing topic: %v, want ErrTopicNotFound", err)
		}
		if ok := must(d.TopicExists("alpha"))(t); !ok {
			t.Fatal("alpha does not exist")
		}
		if ok := must(d.TopicExists("beta"))(t); ok {
			t.Fatal("beta exists")
		}
		list := must(d.ListTopics())(t)
		cfg, ok := list["alpha"]
		if !ok || len(list) != 1 {
			t.Fatalf("ListTopics: %v", list)
		}
		var c struct {
			NumPartitions                            int `json:"num_partitions"`
			Validator, Serializer, PartitionSelector struct{ Type string }
		}
		if err := cfg.Decode(&c); err != nil || c.NumPartitions != 3 || c.Validator.Type != "schema" || c.Serializer.Type != "default" {
			t.Fatalf("alpha's listing %s (%v)", cfg, err)
		}
		th := must(d.OpenTopic("alpha"))(t)
		if th.Name() != "alpha" || len(th.Partitions()) != 3 {
			t.Fatalf("alpha: %q with %d partitions", th.Name(), len(th.Partitions()))
		}
		if got := th.Validator().Metadata().Dump(); !strings.Contains(got, "schema") {
			t.Fatalf("opened with validator %s", got)
		}
		for _, bad := range []string{`{"num_partitions": 0}`, `{"num_partitions": "two"}`, `{"no_such_option": 1}`} {
			if err := d.CreateTopic("gamma", diaspora.MustMetadata(bad)); !errors.Is(err, diaspora.ErrInvalidArgument) {
				t.Fatalf("topic options %s: %v, want ErrInvalidArgument", bad, err)
			}
		}
		if err := d.CreateTopic("bad/name"); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Fatalf("a topic named bad/name: %v, want ErrInvalidArgument", err)
		}
	})
}

func TestPushPullKeepsEveryEventInOrder(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "stream", 2)
		p := must(th.Producer("p"))(t)
		const n = 200
		futures := make([]diaspora.Future[diaspora.EventID], n)
		for i := range n {
			futures[i] = p.PushTo(i%2, md(`{"i": %d}`, i), diaspora.DataView{[]byte(fmt.Sprintf("data-%d", i))})
		}
		for i, f := range futures {
			id, err := f.Wait(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if id != diaspora.EventID(i/2) {
				t.Fatalf("push %d to partition %d got ID %d, want %d (IDs count from 0 in each partition)", i, i%2, id, i/2)
			}
		}
		must(p.Flush().Wait(30 * time.Second))(t)
		c := must(th.Consumer("c", diaspora.FullDataSelector))(t)
		defer c.Close()
		next := map[int]int{0: 0, 1: 1} // the next i of each partition
		for range n {
			ev := must(c.Pull().Wait(30 * time.Second))(t)
			part := partitionOf(t, ev)
			var m struct{ I int }
			if err := ev.Metadata().Decode(&m); err != nil {
				t.Fatal(err)
			}
			if m.I != next[part] || ev.ID() != diaspora.EventID(m.I/2) || string(ev.Data().Bytes()) != fmt.Sprintf("data-%d", m.I) {
				t.Fatalf("partition %d: event %d %s %q, want i %d", part, ev.ID(), ev.Metadata(), ev.Data().Bytes(), next[part])
			}
			next[part] += 2
		}
		if _, err := c.Pull().Wait(100 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
			t.Fatalf("a pull past the end: %v, want ErrTimeout", err)
		}
	})
}

func TestPullThatTimedOutGetsTheNextEvent(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "late", 1)
		c := must(th.Consumer("c"))(t)
		defer c.Close()
		f := c.Pull()
		if _, err := f.Wait(50 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
			t.Fatalf("an empty topic: %v, want ErrTimeout", err)
		}
		p := must(th.Producer("p"))(t)
		must(p.Push(md(`{"late": true}`), nil).Wait(30 * time.Second))(t)
		ev, err := f.Wait(30 * time.Second)
		if err != nil || ev.ID() != 0 || ev.Metadata().Dump() != `{"late":true}` {
			t.Fatalf("the same future, waited again: %v %v", ev.Metadata(), err)
		}
	})
}

func TestSelectionAndAllocation(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "sel", 1)
		p := must(th.Producer("p"))(t)
		must(p.Push(md(`{"k": 1}`), diaspora.DataView{[]byte("0123456789")}).Wait(30 * time.Second))(t)
		// Metadata only.
		c := must(th.Consumer("meta"))(t)
		if ev := must(c.Pull().Wait(30 * time.Second))(t); ev.Data().Size() != 0 {
			t.Fatalf("a consumer without selector got %d bytes", ev.Data().Size())
		}
		c.Close()
		// A strided view, in place.
		stride := func(_ diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return dd.StridedView(1, 3, 2, 1)
		}
		c = must(th.Consumer("stride", diaspora.DataSelector(stride)))(t)
		if ev := must(c.Pull().Wait(30 * time.Second))(t); string(ev.Data().Bytes()) != "124578" {
			t.Fatalf("strided selection gave %q", ev.Data().Bytes())
		}
		c.Close()
		// A sub-view, copied into the allocator's memory.
		var given []byte
		alloc := func(_ diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataView, error) {
			given = make([]byte, dd.Size())
			return diaspora.DataView{given}, nil
		}
		sub := func(_ diaspora.Metadata, dd diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return dd.SubView(6, 100)
		}
		c = must(th.Consumer("alloc", diaspora.DataSelector(sub), diaspora.DataAllocator(alloc)))(t)
		ev := must(c.Pull().Wait(30 * time.Second))(t)
		if string(given) != "6789" || string(ev.Data().Bytes()) != "6789" {
			t.Fatalf("the allocator's buffer holds %q, the event %q", given, ev.Data().Bytes())
		}
		c.Close()
		// A selector's error is the pull's.
		failing := func(diaspora.Metadata, diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return diaspora.DataDescriptor{}, errors.New("not this one")
		}
		c = must(th.Consumer("failing", diaspora.DataSelector(failing)))(t)
		if _, err := c.Pull().Wait(30 * time.Second); err == nil || !strings.Contains(err.Error(), "not this one") {
			t.Fatalf("a failing selector: %v", err)
		}
		c.Close()
	})
}

func TestAcknowledgedNameResumesAfterIt(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "resume", 1)
		p := must(th.Producer("p"))(t)
		for i := range 10 {
			must(p.Push(md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		c := must(th.Consumer("reader"))(t)
		var evs []diaspora.Event
		for range 6 {
			evs = append(evs, must(c.Pull().Wait(30*time.Second))(t))
		}
		if err := evs[4].Acknowledge(); err != nil {
			t.Fatal(err)
		}
		if err := evs[1].Acknowledge(); err != nil { // earlier: changes nothing
			t.Fatal(err)
		}
		c.Close()
		c = must(th.Consumer("reader"))(t)
		defer c.Close()
		if ev := must(c.Pull().Wait(30 * time.Second))(t); ev.ID() != 5 {
			t.Fatalf("the name resumed at event %d, want 5 (after the acknowledged 4)", ev.ID())
		}
		other := must(th.Consumer("another"))(t)
		defer other.Close()
		if ev := must(other.Pull().Wait(30 * time.Second))(t); ev.ID() != 0 {
			t.Fatalf("a new name starts at event %d, want 0", ev.ID())
		}
	})
}

func TestTargetsAreExactlyThosePartitions(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "targets", 3)
		p := must(th.Producer("p"))(t)
		for i := range 30 {
			must(p.PushTo(i%3, md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		c := must(th.Consumer("c", diaspora.Targets{1}))(t)
		defer c.Close()
		for range 10 {
			ev := must(c.Pull().Wait(30 * time.Second))(t)
			if part := partitionOf(t, ev); part != 1 {
				t.Fatalf("a consumer of partition 1 got an event of partition %d", part)
			}
		}
		if _, err := c.Pull().Wait(100 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
			t.Fatalf("past partition 1's 10 events: %v, want ErrTimeout", err)
		}
		if _, err := th.Consumer("bad", diaspora.Targets{3}); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Fatalf("a target past the partitions: %v, want ErrInvalidArgument", err)
		}
	})
}

func TestCompleteEndsTheStream(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "end", 2)
		p := must(th.Producer("p"))(t)
		for i := range 6 {
			must(p.Push(md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		must(p.Flush().Wait(30 * time.Second))(t)
		if err := th.MarkAsComplete(); err != nil {
			t.Fatal(err)
		}
		c := must(th.Consumer("c"))(t)
		defer c.Close()
		n := 0
		for _, err := range c.Events(30 * time.Second) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 6 {
			t.Fatalf("Events gave %d events before the end, want 6", n)
		}
		for range 2 { // the end, again and again
			if ev := must(c.Pull().Wait(30 * time.Second))(t); ev.ID() != diaspora.NoMoreEvents {
				t.Fatalf("after the end: event %d, want NoMoreEvents", ev.ID())
			}
		}
	})
}

func TestBadInputIsAnError(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		v := must(diaspora.ValidatorFromMetadata(diaspora.MustMetadata(`{"type": "schema", "schema": {"type": "object", "required": ["step"]}}`)))(t)
		th := topicWith(t, d, "checked", 1, v)
		if _, err := th.Producer(""); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Fatalf("a producer without a name: %v", err)
		}
		if _, err := th.Consumer(""); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Fatalf("a consumer without a name: %v", err)
		}
		if _, err := th.Consumer("c", diaspora.MustMetadata(`{"no_such_option": 1}`)); err == nil {
			t.Fatal("a consumer option nobody knows was taken")
		}
		p := must(th.Producer("p"))(t)
		if _, err := p.Push(md(`{"nostep": 1}`), nil).Wait(30 * time.Second); !errors.Is(err, diaspora.ErrInvalidMetadata) {
			t.Fatalf("an event the validator refuses: %v, want ErrInvalidMetadata", err)
		}
		if _, err := p.Push(md(`{"step": 1}`), nil).Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Push(md(`{"step": 2}`), nil).Wait(30 * time.Second); !errors.Is(err, diaspora.ErrClosed) {
			t.Fatalf("a push after Close: %v, want ErrClosed", err)
		}
		c := must(th.Consumer("c"))(t)
		c.Close()
		if _, err := c.Pull().Wait(time.Second); !errors.Is(err, diaspora.ErrClosed) {
			t.Fatalf("a pull after Close: %v, want ErrClosed", err)
		}
	})
}

// TestLagCountsWhatTheNameHasNotAcknowledged: the optional Lag of a
// consumer (the forwarder shows it) is the events written after its name's
// stored position, in every partition it reads.
func TestLagCountsWhatTheNameHasNotAcknowledged(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "lag", 2)
		p := must(th.Producer("p"))(t)
		for i := range 10 {
			must(p.PushTo(i%2, md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		c := must(th.Consumer("c", diaspora.Targets{0}))(t)
		defer c.Close()
		lagger, ok := c.Interface().(interface{ Lag() (uint64, error) })
		if !ok {
			t.Fatal("the driver's consumer has no Lag")
		}
		if n := must(lagger.Lag())(t); n != 5 {
			t.Fatalf("lag before reading: %d, want the 5 events of partition 0", n)
		}
		var ev diaspora.Event
		for range 3 {
			ev = must(c.Pull().Wait(30 * time.Second))(t)
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatal(err)
		}
		if n := must(lagger.Lag())(t); n != 2 {
			t.Fatalf("lag after acknowledging 3 of 5: %d, want 2", n)
		}
	})
}

// TestAbandonedPullsTakeNothing: pulls that timed out, and are never
// waited on again, take no event: the next pull gets the first one.
func TestAbandonedPullsTakeNothing(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "abandoned", 1)
		c := must(th.Consumer("c"))(t)
		defer c.Close()
		for range 5 {
			if _, err := c.Pull().Wait(20 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
				t.Fatalf("an empty topic: %v, want ErrTimeout", err)
			}
		}
		p := must(th.Producer("p"))(t)
		for i := range 3 {
			must(p.Push(md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		for i := range 3 {
			if ev := must(c.Pull().Wait(30 * time.Second))(t); ev.ID() != diaspora.EventID(i) {
				t.Fatalf("pull %d after 5 abandoned ones got event %d", i, ev.ID())
			}
		}
	})
}

// TestConcurrentAcknowledgementsNeverGoBack: events acknowledged from many
// goroutines at once leave the name after the last of them.
func TestConcurrentAcknowledgementsNeverGoBack(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		th := topicWith(t, d, "acks", 1)
		p := must(th.Producer("p"))(t)
		const n = 64
		for i := range n {
			must(p.Push(md(`{"i": %d}`, i), nil).Wait(30 * time.Second))(t)
		}
		c := must(th.Consumer("c"))(t)
		evs := make([]diaspora.Event, n)
		for i := range evs {
			evs[i] = must(c.Pull().Wait(30 * time.Second))(t)
		}
		var wg sync.WaitGroup
		for _, ev := range evs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ev.Acknowledge(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		c.Close()
		c = must(th.Consumer("c"))(t)
		defer c.Close()
		if ev, err := c.Pull().Wait(300 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
			t.Fatalf("after all %d were acknowledged, the name resumed at event %d (%v)", n, ev.ID(), err)
		}
	})
}

// TestTopicsNameTheirIncarnation: each creation of a topic has a name of
// its own (the forwarder keeps a re-created source apart from the old one).
func TestTopicsNameTheirIncarnation(t *testing.T) {
	run(t, func(t *testing.T, d diaspora.Driver) {
		a, b := topicWith(t, d, "one", 1), topicWith(t, d, "two", 1)
		ia, ok := a.Interface().(interface{ Incarnation() string })
		if !ok {
			t.Fatal("the driver's topics have no Incarnation")
		}
		ib := b.Interface().(interface{ Incarnation() string })
		again := must(d.OpenTopic("one"))(t).Interface().(interface{ Incarnation() string })
		if ia.Incarnation() == "" || ia.Incarnation() == ib.Incarnation() || again.Incarnation() != ia.Incarnation() {
			t.Fatalf("incarnations %q, %q, and %q when opened again", ia.Incarnation(), ib.Incarnation(), again.Incarnation())
		}
	})
}
