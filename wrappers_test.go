package diaspora_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// openMemTopic makes a memory driver with one topic of n partitions.
func openMemTopic(t *testing.T, n int, args ...diaspora.TopicArg) (diaspora.Driver, diaspora.TopicHandle) {
	t.Helper()
	d, err := diaspora.NewDriver(memDriverName, diaspora.Metadata{})
	if err != nil {
		t.Fatalf("NewDriver(%s): unexpected error %v", memDriverName, err)
	}
	t.Cleanup(func() { d.Close() })
	opts, _ := diaspora.MetadataOf(map[string]int{"num_partitions": n})
	if err := d.CreateTopic("events", append([]diaspora.TopicArg{opts}, args...)...); err != nil {
		t.Fatalf("CreateTopic(events): unexpected error %v", err)
	}
	topic, err := d.OpenTopic("events")
	if err != nil {
		t.Fatalf("OpenTopic(events): unexpected error %v", err)
	}
	return d, topic
}

// pushN pushes n events with metadata {"event_num":i} and data "data-i".
func pushN(t *testing.T, p diaspora.Producer, n int) {
	t.Helper()
	for i := range n {
		md, _ := diaspora.MetadataOf(map[string]int{"event_num": i})
		if _, err := p.Push(md, diaspora.DataView{[]byte(fmt.Sprintf("data-%d", i))}).Wait(time.Second); err != nil {
			t.Fatalf("Push %d: unexpected error %v", i, err)
		}
	}
}

func TestCreateTopicTurnsZeroPluginsIntoDefaults(t *testing.T) {
	d, topic := openMemTopic(t, 2, diaspora.Validator{}, diaspora.Serializer{})
	mt := topic.Interface().(*memTopic)
	if mt.v == nil || mt.s == nil || mt.z == nil {
		t.Fatalf("plug-ins given to the driver: expected defaults, got nil (%v %v %v)", mt.v, mt.s, mt.z)
	}
	for name, md := range map[string]diaspora.Metadata{"validator": topic.Validator().Metadata(),
		"selector": topic.PartitionSelector().Metadata(), "serializer": topic.Serializer().Metadata()} {
		if md.Dump() != `{"type":"default"}` {
			t.Errorf("topic %s: expected {\"type\":\"default\"}, got %s", name, md)
		}
	}
	if len(topic.Partitions()) != 2 || topic.Name() != "events" || !topic.Driver().Valid() {
		t.Fatalf("topic: expected events with 2 partitions and its driver, got %q, %d, %v", topic.Name(), len(topic.Partitions()), topic.Driver().Valid())
	}
	if err := d.CreateTopic("events"); !errors.Is(err, diaspora.ErrTopicExists) {
		t.Fatalf("CreateTopic twice: expected ErrTopicExists, got %v", err)
	}
	if _, err := d.OpenTopic("nosuch"); !errors.Is(err, diaspora.ErrTopicNotFound) {
		t.Fatalf("OpenTopic(nosuch): expected ErrTopicNotFound, got %v", err)
	}
	if err := d.CreateTopic("x", diaspora.Validator{}, diaspora.Validator{}); !errors.Is(err, diaspora.ErrInvalidArgument) {
		t.Fatalf("CreateTopic with two validators: expected ErrInvalidArgument, got %v", err)
	}
	topics, err := d.ListTopics()
	if err != nil || !strings.Contains(topics["events"].Dump(), `"num_partitions":2`) {
		t.Fatalf("ListTopics: expected events with num_partitions 2, got (%v, %v)", topics, err)
	}
}

func TestProducerReportsNameTopicAndDefaults(t *testing.T) {
	d, topic := openMemTopic(t, 1)
	p, err := topic.Producer("sim")
	if err != nil {
		t.Fatalf("Producer(sim): unexpected error %v", err)
	}
	defer p.Close()
	if !p.Valid() || p.Name() != "sim" || p.Topic().Name() != "events" {
		t.Fatalf("producer: expected valid sim on events, got %v %q on %q", p.Valid(), p.Name(), p.Topic().Name())
	}
	if p.BatchSize() != diaspora.AdaptiveBatchSize || p.MaxNumBatches() != 2 || p.Ordering() != diaspora.Strict {
		t.Fatalf("producer defaults: expected (adaptive, 2, strict), got (%v, %d, %v)", p.BatchSize(), p.MaxNumBatches(), p.Ordering())
	}
	if p.ThreadPool().Interface() != d.DefaultThreadPool().Interface() {
		t.Fatalf("producer pool: expected the driver's default pool, got %v", p.ThreadPool().Interface())
	}
	if md := p.Interface().(*memProducer).options; md.Dump() != "{}" {
		t.Fatalf("producer options: expected {}, got %s", md)
	}
}

func TestProducerArgumentsApplyInAnyOrder(t *testing.T) {
	d, topic := openMemTopic(t, 1)
	pool, err := d.MakeThreadPool(2)
	if err != nil {
		t.Fatalf("MakeThreadPool(2): unexpected error %v", err)
	}
	p, err := topic.Producer("sim", diaspora.Loose, pool, diaspora.MaxNumBatches(4), diaspora.BatchSize(64),
		diaspora.MustMetadata(`{"k":1}`))
	if err != nil {
		t.Fatalf("Producer with arguments: unexpected error %v", err)
	}
	if p.BatchSize() != 64 || p.MaxNumBatches() != 4 || p.Ordering() != diaspora.Loose || p.ThreadPool().Interface() != pool.Interface() {
		t.Fatalf("producer: expected (64, 4, loose, the given pool), got (%v, %d, %v, %v)", p.BatchSize(), p.MaxNumBatches(), p.Ordering(), p.ThreadPool().Interface())
	}
	if md := p.Interface().(*memProducer).options; md.Dump() != `{"k":1}` {
		t.Fatalf("producer options: expected {\"k\":1}, got %s", md)
	}
}

func TestProducerRejectsArgumentsThatDoNotApplyOrAreBad(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	cases := []struct {
		args []diaspora.Arg
		want string
	}{
		{[]diaspora.Arg{diaspora.FullDataSelector}, "DataSelector"},
		{[]diaspora.Arg{diaspora.BytesAllocator}, "DataAllocator"},
		{[]diaspora.Arg{diaspora.Targets{0}}, "Targets"},
		{[]diaspora.Arg{diaspora.BatchSize(0)}, "BatchSize 0"},
		{[]diaspora.Arg{diaspora.MaxNumBatches(0)}, "MaxNumBatches 0"},
		{[]diaspora.Arg{diaspora.Ordering(7)}, "ordering 7"},
		{[]diaspora.Arg{diaspora.BatchSize(1), diaspora.BatchSize(2)}, "twice"},
		{[]diaspora.Arg{diaspora.ThreadPool{}}, "ThreadPool"},
	}
	for _, c := range cases {
		p, err := topic.Producer("sim", c.args...)
		if !errors.Is(err, diaspora.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Producer(%v): expected ErrInvalidArgument naming %q, got %v", c.args, c.want, err)
		}
		if p.Valid() {
			t.Errorf("Producer(%v): expected an invalid producer on error", c.args)
		}
	}
}

func TestConsumerReportsNameTopicAndDefaults(t *testing.T) {
	d, topic := openMemTopic(t, 3)
	c, err := topic.Consumer("ana")
	if err != nil {
		t.Fatalf("Consumer(ana): unexpected error %v", err)
	}
	defer c.Close()
	mc := c.Interface().(*memConsumer)
	if c.Name() != "ana" || c.Topic().Name() != "events" {
		t.Fatalf("consumer: expected ana on events, got %q on %q", c.Name(), c.Topic().Name())
	}
	if c.BatchSize() != diaspora.AdaptiveBatchSize || c.MaxNumBatches() != 2 || c.ThreadPool().Interface() != d.DefaultThreadPool().Interface() {
		t.Fatalf("consumer defaults: expected (adaptive, 2, default pool), got (%v, %d, %v)", c.BatchSize(), c.MaxNumBatches(), c.ThreadPool().Interface())
	}
	if c.DataSelector() != nil || c.DataAllocator() != nil || mc.targets != nil {
		t.Fatalf("consumer defaults: expected no selector, no allocator, nil targets; got %v %v %v", c.DataSelector() != nil, c.DataAllocator() != nil, mc.targets)
	}
	c2, err := topic.Consumer("ana2", diaspora.Targets{2, 0}, diaspora.FullDataSelector, diaspora.BytesAllocator)
	if err != nil {
		t.Fatalf("Consumer with arguments: unexpected error %v", err)
	}
	if got := c2.Interface().(*memConsumer).targets; fmt.Sprint(got) != "[2 0]" || c2.DataSelector() == nil || c2.DataAllocator() == nil {
		t.Fatalf("consumer arguments: expected targets [2 0], a selector and an allocator; got %v", got)
	}
}

func TestConsumerRejectsBadTargetsAndArgumentsThatDoNotApply(t *testing.T) {
	_, topic := openMemTopic(t, 2)
	for _, args := range [][]diaspora.Arg{{diaspora.Targets{2}}, {diaspora.Targets{-1}}, {diaspora.Targets{0, 0}},
		{diaspora.Targets{}}, {diaspora.Loose}} {
		if _, err := topic.Consumer("ana", args...); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("Consumer(%v): expected ErrInvalidArgument, got %v", args, err)
		}
	}
	_, err := topic.Consumer("ana", diaspora.Loose)
	if err == nil || !strings.Contains(err.Error(), "Ordering") {
		t.Fatalf("Consumer(Loose): expected an error naming Ordering, got %v", err)
	}
}

func TestEventsComeBackInOrderWithTheirIDs(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	const n = 20
	pushN(t, p, n)
	c, err := topic.Consumer("ana", diaspora.FullDataSelector)
	if err != nil {
		t.Fatalf("Consumer: unexpected error %v", err)
	}
	for i := range n {
		ev, err := c.Pull().Wait(time.Second)
		if err != nil {
			t.Fatalf("Pull %d: unexpected error %v", i, err)
		}
		var md struct {
			EventNum int `json:"event_num"`
		}
		if err := ev.Metadata().Decode(&md); err != nil || md.EventNum != i {
			t.Fatalf("event %d metadata: expected event_num %d, got %s (%v)", i, i, ev.Metadata(), err)
		}
		if ev.ID() != diaspora.EventID(i) {
			t.Fatalf("event %d: expected ID %d, got %d", i, i, ev.ID())
		}
		if got, want := string(ev.Data().Bytes()), fmt.Sprintf("data-%d", i); got != want {
			t.Fatalf("event %d data: expected %s, got %s", i, want, got)
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatalf("Acknowledge %d: unexpected error %v", i, err)
		}
	}
}

func TestConsumerWithoutSelectorGetsMetadataOnly(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 1)
	c, _ := topic.Consumer("ana")
	ev, err := c.Pull().Wait(time.Second)
	if err != nil || ev.Data().Size() != 0 {
		t.Fatalf("event without selector: expected no data, got %d bytes (%v)", ev.Data().Size(), err)
	}
}

func TestSelectorAndAllocatorAreApplied(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	if _, err := p.Push(diaspora.Metadata{}, diaspora.DataView{alphabet}).Wait(time.Second); err != nil {
		t.Fatalf("Push: unexpected error %v", err)
	}
	sel := diaspora.DataSelector(func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
		return d.StridedView(13, 3, 4, 2)
	})
	var allocated atomic.Int64
	alloc := diaspora.DataAllocator(func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataView, error) {
		allocated.Add(int64(d.Size()))
		return diaspora.DataView{make([]byte, 5), make([]byte, d.Size()-5)}, nil
	})
	c, _ := topic.Consumer("ana", alloc, sel)
	ev, err := c.Pull().Wait(time.Second)
	if err != nil {
		t.Fatalf("Pull: unexpected error %v", err)
	}
	if got := string(ev.Data().Bytes()); got != "nopqtuvwzABC" || allocated.Load() != 12 || len(ev.Data()) != 2 {
		t.Fatalf("selected data: expected nopqtuvwzABC in the allocator's 2 segments (12 bytes), got %q in %d segments (%d allocated)",
			got, len(ev.Data()), allocated.Load())
	}
}

func TestPushToAndTargetsChoosePartitions(t *testing.T) {
	_, topic := openMemTopic(t, 3)
	p, _ := topic.Producer("sim")
	for i := range 3 {
		if _, err := p.PushTo(i+3, diaspora.MustMetadata(fmt.Sprintf(`{"p":%d}`, i)), nil).Wait(time.Second); err != nil {
			t.Fatalf("PushTo(%d): unexpected error %v", i+3, err)
		}
	}
	c, _ := topic.Consumer("ana", diaspora.Targets{1})
	ev, err := c.Pull().Wait(time.Second)
	if err != nil || ev.Metadata().Dump() != `{"p":1}` || ev.Partition().Dump() != `{"id":1}` {
		t.Fatalf("consumer of partition 1: expected {\"p\":1} from partition 1, got %s from %s (%v)", ev.Metadata(), ev.Partition(), err)
	}
	if _, err := c.Pull().Wait(10 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
		t.Fatalf("second pull of partition 1: expected ErrTimeout, got %v", err)
	}
}

func TestEventsIteratorEndsOnTimeout(t *testing.T) {
	_, topic := openMemTopic(t, 2)
	p, _ := topic.Producer("sim")
	pushN(t, p, 6)
	c, _ := topic.Consumer("ana")
	n := 0
	for ev, err := range c.Events(20 * time.Millisecond) {
		if err != nil {
			t.Fatalf("Events: unexpected error %v", err)
		}
		if !ev.Valid() {
			t.Fatalf("Events: expected valid events, got the zero Event")
		}
		n++
	}
	if n != 6 {
		t.Fatalf("Events: expected 6 events before the timeout, got %d", n)
	}
}

func TestEventsIteratorEndsOnNoMoreEvents(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 3)
	if err := topic.MarkAsComplete(); err != nil {
		t.Fatalf("MarkAsComplete: unexpected error %v", err)
	}
	c, _ := topic.Consumer("ana")
	var ids []diaspora.EventID
	start := time.Now()
	for ev, err := range c.Events(-1) {
		if err != nil {
			t.Fatalf("Events: unexpected error %v", err)
		}
		ids = append(ids, ev.ID())
	}
	if fmt.Sprint(ids) != "[0 1 2]" || time.Since(start) > time.Second {
		t.Fatalf("Events of a completed topic: expected [0 1 2] without waiting, got %v after %v", ids, time.Since(start))
	}
}

func TestEventsIteratorStopsWhenTheLoopBreaks(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 5)
	c, _ := topic.Consumer("ana")
	for ev := range c.Events(-1) {
		if ev.ID() == 1 {
			break
		}
	}
	ev, err := c.Pull().Wait(time.Second)
	if err != nil || ev.ID() != 2 {
		t.Fatalf("Pull after breaking at event 1: expected event 2, got %d (%v)", ev.ID(), err)
	}
}

func TestProcessStopsAtMax(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 10)
	c, _ := topic.Consumer("ana")
	var ids []diaspora.EventID
	err := c.Process(func(ev diaspora.Event) error {
		ids = append(ids, ev.ID())
		return nil
	}, time.Second, 4, diaspora.ThreadPool{})
	if err != nil || fmt.Sprint(ids) != "[0 1 2 3]" {
		t.Fatalf("Process(max 4): expected events [0 1 2 3] and nil, got %v and %v", ids, err)
	}
}

func TestProcessStopsOnErrStopProcessing(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 10)
	c, _ := topic.Consumer("ana")
	n := 0
	err := c.Process(func(ev diaspora.Event) error {
		n++
		if ev.ID() == 2 {
			return diaspora.ErrStopProcessing
		}
		return nil
	}, time.Second, diaspora.InfiniteEvents, diaspora.ThreadPool{})
	if err != nil || n != 3 {
		t.Fatalf("Process stopped at event 2: expected 3 events and nil, got %d and %v", n, err)
	}
}

func TestProcessStopsOnTimeoutAndReturnsTheFirstError(t *testing.T) {
	d, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	pushN(t, p, 10)
	c, _ := topic.Consumer("ana")
	pool, _ := d.MakeThreadPool(3)
	var mu sync.Mutex
	n := 0
	err := c.Process(func(ev diaspora.Event) error {
		mu.Lock()
		n++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		return nil
	}, 20*time.Millisecond, diaspora.InfiniteEvents, pool)
	mu.Lock()
	got := n
	mu.Unlock()
	if err != nil || got != 10 {
		t.Fatalf("Process on a pool until timeout: expected all 10 events done on return and nil, got %d and %v", got, err)
	}
	pushN(t, p, 2)
	boom := errors.New("boom")
	err = c.Process(func(ev diaspora.Event) error { return boom }, 20*time.Millisecond, diaspora.InfiniteEvents, pool)
	if !errors.Is(err, boom) {
		t.Fatalf("Process with a failing processor: expected its error, got %v", err)
	}
}

func TestClaimWithoutDriverSupportIsNotSupported(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	p, _ := topic.Producer("sim")
	if _, err := p.Claim(diaspora.Metadata{}, 8); !errors.Is(err, diaspora.ErrNotSupported) {
		t.Fatalf("Claim on a driver without ClaimerInterface: expected ErrNotSupported, got %v", err)
	}
}

func TestSchemaValidatorRejectsPushes(t *testing.T) {
	v, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(eventSchema))
	if err != nil {
		t.Fatalf("ValidatorFromMetadata: unexpected error %v", err)
	}
	_, topic := openMemTopic(t, 1, v)
	p, _ := topic.Producer("sim")
	if _, err := p.Push(diaspora.MustMetadata(`{"event_num":"x"}`), nil).Wait(time.Second); !errors.Is(err, diaspora.ErrInvalidMetadata) {
		t.Fatalf("Push of non-conforming metadata: expected ErrInvalidMetadata, got %v", err)
	}
	if id, err := p.Push(diaspora.MustMetadata(`{"event_num":1}`), nil).Wait(time.Second); err != nil || id != 0 {
		t.Fatalf("Push of conforming metadata: expected ID 0, got (%d, %v)", id, err)
	}
}

func TestZeroWrappersReturnErrorsInsteadOfPanicking(t *testing.T) {
	var (
		d  diaspora.Driver
		tp diaspora.TopicHandle
		p  diaspora.Producer
		c  diaspora.Consumer
		e  diaspora.Event
	)
	checks := map[string]error{
		"Driver.CreateTopic":         d.CreateTopic("x"),
		"Driver.Close":               d.Close(),
		"TopicHandle.MarkAsComplete": tp.MarkAsComplete(),
		"Producer.Close":             p.Close(),
		"Consumer.Unsubscribe":       c.Unsubscribe(),
		"Event.Acknowledge":          e.Acknowledge(),
		"Consumer.Process":           c.Process(func(diaspora.Event) error { return nil }, 0, 1, diaspora.ThreadPool{}),
	}
	_, checks["Driver.OpenTopic"] = d.OpenTopic("x")
	_, checks["TopicHandle.Producer"] = tp.Producer("x")
	_, checks["TopicHandle.Consumer"] = tp.Consumer("x")
	_, checks["Producer.Push"] = p.Push(diaspora.Metadata{}, nil).Wait(0)
	_, checks["Producer.Flush"] = p.Flush().Wait(0)
	_, checks["Producer.Claim"] = p.Claim(diaspora.Metadata{}, 1)
	_, checks["Consumer.Pull"] = c.Pull().Wait(0)
	for ev, err := range c.Events(0) {
		checks["Consumer.Events"] = err
		_ = ev
	}
	for name, err := range checks {
		if !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("%s on the zero value: expected ErrInvalidArgument, got %v", name, err)
		}
	}
	if d.Valid() || tp.Valid() || p.Valid() || c.Valid() || e.Valid() || e.ID() != diaspora.NoMoreEvents || tp.Name() != "" {
		t.Fatalf("zero wrappers: expected invalid, with empty values")
	}
}
