package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/diaspora-shm/diaspora"
)

// headerSize is the record header: metadata size, data size (FORMAT.md).
const headerSize = 16

func endMarker() []byte {
	b := make([]byte, headerSize)
	for i := range b {
		b[i] = 0xff
	}
	return b
}

// decodeRecord splits a record value into metadata and data, or says what
// is wrong with it; end reports the end-of-stream marker.
func decodeRecord(v []byte) (md, data []byte, end bool, err error) {
	if len(v) < headerSize {
		return nil, nil, false, fmt.Errorf("a value of %d bytes, shorter than the 16-byte header", len(v))
	}
	ml, dl := binary.LittleEndian.Uint64(v[0:8]), binary.LittleEndian.Uint64(v[8:16])
	if ml == math.MaxUint64 && dl == math.MaxUint64 {
		return nil, nil, true, nil
	}
	rest := uint64(len(v) - headerSize)
	if ml > rest || dl != rest-ml {
		return nil, nil, false, fmt.Errorf("header sizes %d + %d do not add up to the %d bytes after it", ml, dl, rest)
	}
	return v[headerSize : headerSize+ml], v[headerSize+ml:], false, nil
}

func (t *topic) MakeConsumer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches, pool diaspora.ThreadPoolInterface,
	alloc diaspora.DataAllocator, sel diaspora.DataSelector, targets []int, options diaspora.Metadata) (diaspora.ConsumerInterface, error) {
	if err := t.d.checkOpen(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%w: consumer name is empty", diaspora.ErrInvalidArgument)
	}
	if err := noOptions(options, "consumer"); err != nil {
		return nil, err
	}
	if pool == nil {
		pool = t.d.pool
	}
	parts := targets
	if len(parts) == 0 {
		for p := range t.infos {
			parts = append(parts, p)
		}
	}
	seen := map[int]bool{}
	for _, p := range parts {
		if p < 0 || p >= len(t.infos) {
			return nil, fmt.Errorf("%w: consumer %q of topic %q: target partition %d of %d", diaspora.ErrInvalidArgument, name, t.name, p, len(t.infos))
		}
		if seen[p] {
			return nil, fmt.Errorf("%w: consumer %q of topic %q: target partition %d given twice", diaspora.ErrInvalidArgument, name, t.name, p)
		}
		seen[p] = true
	}
	// The name is a consumer group: start after what it committed.
	ctx, cancel := t.d.ctx()
	defer cancel()
	committed, err := t.d.adm.FetchOffsets(ctx, name)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a new name: nothing committed
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %q of topic %q: read its committed offsets: %w", name, t.name, err)
	}
	start := map[int32]kgo.Offset{}
	acked := map[int]int64{}
	for _, p := range parts {
		off := kgo.NewOffset().AtStart()
		if r, ok := committed.Lookup(t.kt, int32(p)); ok && r.Err == nil && r.At >= 0 {
			off = kgo.NewOffset().At(r.At)
			acked[p] = r.At
		}
		start[int32(p)] = off
	}
	cl, err := kgo.NewClient(append(t.d.opts.base(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.kt: start}),
		kgo.FetchMaxBytes(max(t.d.opts.MaxMessage, 50<<20)),
		kgo.FetchMaxPartitionBytes(max(t.d.opts.MaxMessage, 1<<20)),
		kgo.FetchMaxWait(100*time.Millisecond),
		// Records of a transaction that was aborted (a forwarder killed
		// mid-write) are never delivered.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return nil, err
	}
	c := &consumer{t: t, cl: cl, name: name, batch: batch, maxBatches: maxBatches, pool: pool, alloc: alloc, sel: sel,
		parts: parts, ended: map[int]bool{}, acked: acked, ready: make(chan result),
		done: make(chan struct{}), stopped: make(chan struct{})}
	go c.run()
	return c, nil
}

type consumer struct {
	t          *topic
	cl         *kgo.Client
	name       string
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	pool       diaspora.ThreadPoolInterface
	alloc      diaspora.DataAllocator
	sel        diaspora.DataSelector
	parts      []int

	ready   chan result   // unbuffered: an event is built ahead by one at most
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when run returns

	mu       sync.Mutex // acked, closed
	commitMu sync.Mutex // one commit at a time: a lower offset never lands after a higher
	acked    map[int]int64
	ended    map[int]bool // run's own
	closed   bool
}

func (c *consumer) Name() string                             { return c.name }
func (c *consumer) BatchSize() diaspora.BatchSize            { return c.batch }
func (c *consumer) MaxNumBatches() diaspora.MaxNumBatches    { return c.maxBatches }
func (c *consumer) ThreadPool() diaspora.ThreadPoolInterface { return c.pool }
func (c *consumer) Topic() diaspora.TopicHandleInterface     { return c.t }
func (c *consumer) DataAllocator() diaspora.DataAllocator    { return c.alloc }
func (c *consumer) DataSelector() diaspora.DataSelector      { return c.sel }

// Pull returns a future that takes the next event when it is waited on
// (or asked whether it completed): a future that times out, or that is
// dropped, takes nothing, so no event is lost to it.
func (c *consumer) Pull() diaspora.Future[diaspora.Event] { return &pullFuture{c: c} }

// result is an event built by run, or the error of its record.
type result struct {
	ev  diaspora.Event
	err error
}

type pullFuture struct {
	c    *consumer
	mu   sync.Mutex
	done bool
	res  result
}

func (f *pullFuture) Wait(timeout time.Duration) (diaspora.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.res.ev, f.res.err
	}
	// What is ready is taken first: a timer that fired at once (timeout 0)
	// must not win over an event that was there.
	select {
	case r := <-f.c.ready:
		f.done, f.res = true, r
		return r.ev, r.err
	default:
	}
	var expire <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	select {
	case r := <-f.c.ready:
		f.done, f.res = true, r
	case <-f.c.stopped:
		f.done, f.res = true, result{err: f.c.closedErr()}
	case <-expire:
		return diaspora.Event{}, fmt.Errorf("%w: consumer %q of topic %q: no event within %v", diaspora.ErrTimeout, f.c.name, f.c.t.name, timeout)
	}
	return f.res.ev, f.res.err
}

func (f *pullFuture) Completed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return true
	}
	select {
	case r := <-f.c.ready:
		f.done, f.res = true, r
	case <-f.c.stopped:
		f.done, f.res = true, result{err: f.c.closedErr()}
	default:
	}
	return f.done
}

func (c *consumer) closedErr() error {
	return fmt.Errorf("%w: consumer %q of topic %q", diaspora.ErrClosed, c.name, c.t.name)
}

// run fetches records and gives each, built into an event, to the next
// waiter; after every target partition ended, each waiter gets the end of
// the stream.
func (c *consumer) run() {
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		queue []*kgo.Record
		errs  []error
	)
	for {
		if len(queue) == 0 && len(errs) > 0 {
			err := errs[0]
			errs = errs[1:]
			if !c.give(diaspora.Event{}, err) {
				return
			}
			continue
		}
		if len(queue) == 0 && len(c.ended) < len(c.parts) {
			fs := c.cl.PollRecords(ctx, 256)
			if ctx.Err() != nil {
				return
			}
			// The records of the poll are delivered, then its errors: the
			// client moved past both.
			queue = fs.Records()
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					errs = append(errs, fmt.Errorf("consumer %q of topic %q: partition %d: %w", c.name, c.t.name, p, err))
				}
			})
			continue
		}
		if len(queue) == 0 {
			// Every partition ended: the end of the stream, for ever.
			if !c.give(diaspora.NewEvent(&event{id: diaspora.NoMoreEvents}), nil) {
				return
			}
			continue
		}
		r := queue[0]
		queue = queue[1:]
		p := int(r.Partition)
		if c.ended[p] {
			continue // written after the end marker
		}
		md, data, end, err := decodeRecord(r.Value)
		if err != nil {
			err = fmt.Errorf("consumer %q: topic %q partition %d offset %d: not a diaspora record: %v", c.name, c.t.name, p, r.Offset, err)
			if !c.give(diaspora.Event{}, err) {
				return
			}
			continue
		}
		if end {
			c.ended[p] = true
			c.cl.PauseFetchPartitions(map[string][]int32{c.t.kt: {r.Partition}})
			continue
		}
		ev, err := c.build(r, md, data)
		if err != nil {
			err = fmt.Errorf("consumer %q: topic %q partition %d offset %d: %w", c.name, c.t.name, p, r.Offset, err)
		}
		if !c.give(ev, err) {
			return
		}
	}
}

// give hands (ev, err) to the next future that waits; false once the
// consumer closed.
func (c *consumer) give(ev diaspora.Event, err error) bool {
	select {
	case c.ready <- result{ev, err}:
		return true
	case <-c.done:
		return false
	}
}

// build deserializes the metadata and applies the selector and allocator,
// as the shm driver does.
func (c *consumer) build(r *kgo.Record, mdBytes, data []byte) (diaspora.Event, error) {
	md, err := c.t.ser.Deserialize(mdBytes)
	if err != nil {
		return diaspora.Event{}, err
	}
	e := &event{id: diaspora.EventID(r.Offset), md: md, c: c, part: int(r.Partition)}
	if c.sel == nil {
		return diaspora.NewEvent(e), nil
	}
	d, err := c.sel(md, diaspora.NewDataDescriptor("", len(data)))
	if err != nil {
		return diaspora.Event{}, fmt.Errorf("data selector: %w", err)
	}
	if d.IsZero() {
		return diaspora.NewEvent(e), nil
	}
	if d.BaseSize() != len(data) {
		return diaspora.Event{}, fmt.Errorf("%w: the data selector returned a view of %d bytes of data for an event of %d", diaspora.ErrInvalidArgument, d.BaseSize(), len(data))
	}
	segs := d.Flatten()
	if c.alloc == nil {
		view := make(diaspora.DataView, len(segs))
		for i, s := range segs {
			view[i] = data[s.Offset : s.Offset+s.Size : s.Offset+s.Size]
		}
		e.data = view
		return diaspora.NewEvent(e), nil
	}
	view, err := c.alloc(md, d)
	if err != nil {
		return diaspora.Event{}, fmt.Errorf("data allocator: %w", err)
	}
	if view.Size() < d.Size() {
		return diaspora.Event{}, fmt.Errorf("%w: the allocator gave %d bytes for %d selected", diaspora.ErrInvalidArgument, view.Size(), d.Size())
	}
	off := 0
	for _, s := range segs {
		off += view.Write(data[s.Offset:s.Offset+s.Size], off)
	}
	e.data = view
	return diaspora.NewEvent(e), nil
}

// Process runs p on each event, as the shm driver's does.
func (c *consumer) Process(p diaspora.EventProcessor, timeout time.Duration, max diaspora.NumEvents, pool diaspora.ThreadPoolInterface) error {
	return diaspora.ProcessEvents(c, p, timeout, max, pool)
}

// Lag is how many records of its partitions the consumer's name has not
// committed yet (end markers included).
func (c *consumer) Lag() (uint64, error) {
	ctx, cancel := c.t.d.ctx()
	defer cancel()
	ends, err := c.t.d.adm.ListEndOffsets(ctx, c.t.kt)
	if err != nil {
		return 0, fmt.Errorf("consumer %q of topic %q: %w", c.name, c.t.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var lag uint64
	for _, p := range c.parts {
		e, ok := ends.Lookup(c.t.kt, int32(p))
		if !ok || e.Err != nil {
			continue
		}
		if e.Offset > c.acked[p] {
			lag += uint64(e.Offset - c.acked[p])
		}
	}
	return lag, nil
}

// Unsubscribe is Close: the committed offsets stay.
func (c *consumer) Unsubscribe() error { return c.Close() }

// Close stops the fetching; pending pulls fail with ErrClosed.
func (c *consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	<-c.stopped
	c.cl.Close()
	return nil
}

// commit commits the offset after id in partition p for the consumer's
// group, unless a later one is committed already.
func (c *consumer) commit(p int, id uint64) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	closed := c.closed
	prev, ok := c.acked[p]
	c.mu.Unlock()
	if closed {
		return c.closedErr()
	}
	next := int64(id) + 1
	if ok && prev >= next {
		return nil
	}
	ctx, cancel := c.t.d.ctx()
	defer cancel()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: c.t.kt, Partition: int32(p), At: next, LeaderEpoch: -1})
	resp, err := c.t.d.adm.CommitOffsets(ctx, c.name, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("consumer %q of topic %q: acknowledge event %d of partition %d: %w", c.name, c.t.name, id, p, err)
	}
	c.mu.Lock()
	if c.acked[p] < next {
		c.acked[p] = next
	}
	c.mu.Unlock()
	return nil
}

// event is a delivered event; the end of the stream has c == nil.
type event struct {
	id   diaspora.EventID
	md   diaspora.Metadata
	data diaspora.DataView
	c    *consumer
	part int
}

func (e *event) Metadata() diaspora.Metadata { return e.md }
func (e *event) Data() diaspora.DataView     { return e.data }
func (e *event) ID() diaspora.EventID        { return e.id }
func (e *event) Partition() diaspora.PartitionInfo {
	if e.c == nil {
		return diaspora.PartitionInfo{}
	}
	return e.c.t.infos[e.part]
}

// Acknowledge commits the offset after the event for the consumer's name.
func (e *event) Acknowledge() error {
	if e.c == nil {
		return nil
	}
	return e.c.commit(e.part, e.id)
}
