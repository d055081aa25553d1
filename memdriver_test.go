package diaspora_test

// An in-process driver for the tests and examples of the root package, like
// the SimpleBackend of the C++ project: topics are slices of records in
// memory, consumers read them in order, round robin over their partitions.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// memDriverName is the test-only name the memory driver registers under.
const memDriverName = "memtest"

func init() {
	diaspora.RegisterDriver(memDriverName, func(diaspora.Metadata) (diaspora.DriverInterface, error) {
		return &memDriver{topics: map[string]*memTopic{}, pool: diaspora.NewGoroutinePool(0)}, nil
	})
}

type memDriver struct {
	mu     sync.Mutex
	topics map[string]*memTopic
	pool   *diaspora.GoroutinePool
	pools  []*diaspora.GoroutinePool
}

func (d *memDriver) CreateTopic(name string, options diaspora.Metadata, v diaspora.ValidatorInterface,
	s diaspora.PartitionSelectorInterface, z diaspora.SerializerInterface) error {
	if v == nil || s == nil || z == nil {
		return fmt.Errorf("memdriver: topic %q: nil plug-in (validator %v, selector %v, serializer %v)", name, v, s, z)
	}
	var opts struct {
		NumPartitions int `json:"num_partitions"`
	}
	if err := options.Decode(&opts); err != nil {
		return err
	}
	if opts.NumPartitions <= 0 {
		opts.NumPartitions = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.topics[name]; ok {
		return fmt.Errorf("memdriver: topic %q: %w", name, diaspora.ErrTopicExists)
	}
	t := &memTopic{d: d, name: name, options: options, v: v, s: s, z: z,
		events: make([][]memRecord, opts.NumPartitions), changed: make(chan struct{})}
	for i := range opts.NumPartitions {
		md, _ := diaspora.MetadataOf(map[string]int{"id": i})
		t.parts = append(t.parts, diaspora.PartitionInfo{Metadata: md})
	}
	if err := s.SetPartitions(t.parts); err != nil {
		return err
	}
	d.topics[name] = t
	return nil
}

func (d *memDriver) OpenTopic(name string) (diaspora.TopicHandleInterface, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.topics[name]
	if !ok {
		return nil, fmt.Errorf("memdriver: topic %q: %w", name, diaspora.ErrTopicNotFound)
	}
	return t, nil
}

func (d *memDriver) TopicExists(name string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.topics[name]
	return ok, nil
}

func (d *memDriver) ListTopics() (map[string]diaspora.Metadata, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]diaspora.Metadata{}
	for name, t := range d.topics {
		md, err := diaspora.MetadataOf(map[string]any{
			"num_partitions":     len(t.parts),
			"validator":          t.v.Metadata(),
			"partition_selector": t.s.Metadata(),
			"serializer":         t.z.Metadata(),
		})
		if err != nil {
			return nil, err
		}
		out[name] = md
	}
	return out, nil
}

func (d *memDriver) DefaultThreadPool() diaspora.ThreadPoolInterface { return d.pool }

func (d *memDriver) MakeThreadPool(n diaspora.ThreadCount) (diaspora.ThreadPoolInterface, error) {
	p := diaspora.NewGoroutinePool(n)
	d.mu.Lock()
	d.pools = append(d.pools, p)
	d.mu.Unlock()
	return p, nil
}

func (d *memDriver) Close() error {
	d.mu.Lock()
	pools := d.pools
	d.pools = nil
	d.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
	return nil
}

type memRecord struct {
	md   []byte
	data []byte
}

type memTopic struct {
	d       *memDriver
	name    string
	options diaspora.Metadata
	v       diaspora.ValidatorInterface
	s       diaspora.PartitionSelectorInterface
	z       diaspora.SerializerInterface
	parts   []diaspora.PartitionInfo

	mu       sync.Mutex
	events   [][]memRecord
	changed  chan struct{} // closed and replaced when events are added
	complete bool
}

func (t *memTopic) Name() string                                           { return t.name }
func (t *memTopic) Driver() diaspora.DriverInterface                       { return t.d }
func (t *memTopic) Partitions() []diaspora.PartitionInfo                   { return t.parts }
func (t *memTopic) Validator() diaspora.ValidatorInterface                 { return t.v }
func (t *memTopic) PartitionSelector() diaspora.PartitionSelectorInterface { return t.s }
func (t *memTopic) Serializer() diaspora.SerializerInterface               { return t.z }

// notify wakes the pulls waiting on t; t.mu must be held.
func (t *memTopic) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *memTopic) MarkAsComplete() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.complete = true
	t.notify()
	return nil
}

func (t *memTopic) MakeProducer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches,
	ordering diaspora.Ordering, pool diaspora.ThreadPoolInterface, options diaspora.Metadata) (diaspora.ProducerInterface, error) {
	return &memProducer{t: t, name: name, batch: batch, maxBatches: maxBatches, ordering: ordering, pool: pool, options: options}, nil
}

func (t *memTopic) MakeConsumer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches,
	pool diaspora.ThreadPoolInterface, alloc diaspora.DataAllocator, sel diaspora.DataSelector,
	targets []int, options diaspora.Metadata) (diaspora.ConsumerInterface, error) {
	c := &memConsumer{t: t, name: name, batch: batch, maxBatches: maxBatches, pool: pool,
		alloc: alloc, sel: sel, targets: targets, options: options, next: make([]int, len(t.parts))}
	if targets == nil {
		for i := range t.parts {
			c.read = append(c.read, i)
		}
	} else {
		c.read = targets
	}
	return c, nil
}

type memProducer struct {
	t          *memTopic
	name       string
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	ordering   diaspora.Ordering
	pool       diaspora.ThreadPoolInterface
	options    diaspora.Metadata
	closed     atomic.Bool
}

func (p *memProducer) Name() string                             { return p.name }
func (p *memProducer) BatchSize() diaspora.BatchSize            { return p.batch }
func (p *memProducer) MaxNumBatches() diaspora.MaxNumBatches    { return p.maxBatches }
func (p *memProducer) Ordering() diaspora.Ordering              { return p.ordering }
func (p *memProducer) ThreadPool() diaspora.ThreadPoolInterface { return p.pool }
func (p *memProducer) Topic() diaspora.TopicHandleInterface     { return p.t }

func (p *memProducer) Push(md diaspora.Metadata, data diaspora.DataView, partition int) diaspora.Future[diaspora.EventID] {
	fail := func(err error) diaspora.Future[diaspora.EventID] {
		return diaspora.ReadyFuture[diaspora.EventID](0, err)
	}
	if p.closed.Load() {
		return fail(fmt.Errorf("memdriver: producer %q: %w", p.name, diaspora.ErrClosed))
	}
	t := p.t
	if err := t.v.Validate(md, data); err != nil {
		return fail(err)
	}
	part, err := t.s.SelectPartitionFor(md, partition)
	if err != nil {
		return fail(err)
	}
	b, err := t.z.Serialize(nil, md)
	if err != nil {
		return fail(err)
	}
	rec := memRecord{md: b, data: append([]byte(nil), data.Bytes()...)}
	t.mu.Lock()
	defer t.mu.Unlock()
	id := diaspora.EventID(len(t.events[part]))
	t.events[part] = append(t.events[part], rec)
	t.notify()
	return diaspora.ReadyFuture(id, nil)
}

func (p *memProducer) Flush() diaspora.Future[struct{}] { return diaspora.ReadyFuture(struct{}{}, nil) }

func (p *memProducer) Close() error {
	p.closed.Store(true)
	return nil
}

type memConsumer struct {
	t          *memTopic
	name       string
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	pool       diaspora.ThreadPoolInterface
	alloc      diaspora.DataAllocator
	sel        diaspora.DataSelector
	targets    []int // as given to MakeConsumer
	options    diaspora.Metadata
	read       []int // the partitions read
	closed     atomic.Bool

	mu    sync.Mutex // guards next, rr, acked
	next  []int      // next event index per partition
	rr    int        // index in read of the partition to look at first
	acked []diaspora.EventID
}

func (c *memConsumer) Name() string                             { return c.name }
func (c *memConsumer) BatchSize() diaspora.BatchSize            { return c.batch }
func (c *memConsumer) MaxNumBatches() diaspora.MaxNumBatches    { return c.maxBatches }
func (c *memConsumer) ThreadPool() diaspora.ThreadPoolInterface { return c.pool }
func (c *memConsumer) Topic() diaspora.TopicHandleInterface     { return c.t }
func (c *memConsumer) DataAllocator() diaspora.DataAllocator    { return c.alloc }
func (c *memConsumer) DataSelector() diaspora.DataSelector      { return c.sel }

func (c *memConsumer) Pull() diaspora.Future[diaspora.Event] {
	if c.closed.Load() {
		return diaspora.ReadyFuture(diaspora.Event{}, fmt.Errorf("memdriver: consumer %q: %w", c.name, diaspora.ErrClosed))
	}
	return &memPull{c: c}
}

func (c *memConsumer) Process(p diaspora.EventProcessor, timeout time.Duration, max diaspora.NumEvents,
	pool diaspora.ThreadPoolInterface) error {
	return diaspora.ProcessEvents(c, p, timeout, max, pool)
}

func (c *memConsumer) Unsubscribe() error { return nil }

func (c *memConsumer) Close() error {
	c.closed.Store(true)
	return nil
}

// take returns the next event if there is one, and otherwise the channel
// closed when the topic changes.
func (c *memConsumer) take() (diaspora.Event, bool, <-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range c.read {
		k := (c.rr + i) % len(c.read)
		p := c.read[k]
		if c.next[p] >= len(t.events[p]) {
			continue
		}
		rec := t.events[p][c.next[p]]
		id := diaspora.EventID(c.next[p])
		c.next[p]++
		c.rr = (k + 1) % len(c.read)
		ev, err := c.makeEvent(rec, p, id)
		return ev, err == nil, nil, err
	}
	if t.complete {
		return diaspora.NewEvent(&memEvent{id: diaspora.NoMoreEvents}), true, nil, nil
	}
	return diaspora.Event{}, false, t.changed, nil
}

func (c *memConsumer) makeEvent(rec memRecord, p int, id diaspora.EventID) (diaspora.Event, error) {
	md, err := c.t.z.Deserialize(rec.md)
	if err != nil {
		return diaspora.Event{}, err
	}
	ev := &memEvent{c: c, md: md, part: c.t.parts[p], id: id}
	if c.sel == nil {
		return diaspora.NewEvent(ev), nil
	}
	d, err := c.sel(md, diaspora.NewDataDescriptor("mem", len(rec.data)))
	if err != nil || d.IsZero() {
		return diaspora.NewEvent(ev), err
	}
	if c.alloc == nil {
		for _, s := range d.Flatten() {
			ev.data = append(ev.data, rec.data[s.Offset:s.Offset+s.Size])
		}
		return diaspora.NewEvent(ev), nil
	}
	if ev.data, err = c.alloc(md, d); err != nil {
		return diaspora.Event{}, err
	}
	off := 0
	for _, s := range d.Flatten() {
		off += ev.data.Write(rec.data[s.Offset:s.Offset+s.Size], off)
	}
	return diaspora.NewEvent(ev), nil
}

// memPull is the future of a Pull; it takes its event only when waited, so a
// pull that timed out loses nothing and can be waited again.
type memPull struct {
	c    *memConsumer
	mu   sync.Mutex
	done bool
	ev   diaspora.Event
	err  error
}

func (f *memPull) Wait(timeout time.Duration) (diaspora.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var deadline <-chan time.Time
	if timeout >= 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		deadline = tm.C
	}
	for !f.done {
		ev, ok, changed, err := f.c.take()
		if ok || err != nil {
			f.done, f.ev, f.err = true, ev, err
			break
		}
		select {
		case <-changed:
		case <-deadline:
			return diaspora.Event{}, fmt.Errorf("memdriver: pull after %v: %w", timeout, diaspora.ErrTimeout)
		}
	}
	return f.ev, f.err
}

func (f *memPull) Completed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

type memEvent struct {
	c    *memConsumer
	md   diaspora.Metadata
	data diaspora.DataView
	part diaspora.PartitionInfo
	id   diaspora.EventID
}

func (e *memEvent) Metadata() diaspora.Metadata       { return e.md }
func (e *memEvent) Data() diaspora.DataView           { return e.data }
func (e *memEvent) Partition() diaspora.PartitionInfo { return e.part }
func (e *memEvent) ID() diaspora.EventID              { return e.id }

func (e *memEvent) Acknowledge() error {
	if e.c == nil {
		return nil
	}
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	e.c.acked = append(e.c.acked, e.id)
	return nil
}
