package driver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/segment"
	"golang.org/x/sys/unix"
)

// consumer reads events of its target partitions: from the segment log while
// it is behind what the ring holds, then from the ring in place. Its position
// per partition is stored durably under its name on Acknowledge.
type consumer struct {
	name       string
	topic      *topicState
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	pool       diaspora.ThreadPoolInterface
	alloc      diaspora.DataAllocator
	sel        diaspora.DataSelector
	opts       consumerOptions
	zeroCopy   bool // Data() points into the ring: space is released on Acknowledge

	plainMeta bool // the default serializer: metadata is its JSON text
	fullSel   bool // the selector is diaspora.FullDataSelector: no call needed
	inPlace   bool // events are in-place events (inplace.go) when they come from the ring

	// Events and metadata copies are carved from blocks, to allocate per
	// block rather than per event; an event the user keeps keeps its block.
	slab    slab[event]
	views   slab[eventViews]
	arena   []byte
	arenaAt int // bytes of arena used

	mu    sync.Mutex // one Pull is served at a time
	parts []*consumerPartition
	// ready holds events delivered from the ring in one pass (one lock,
	// one fault guard, one release of ring space for the whole batch),
	// handed out by the next Pulls in order; readyErr is an error met
	// after them, handed out once they are.
	ready    []diaspora.Event
	readyAt  int
	readyErr error
	// raw holds, for a consumer with a DataAllocator, records read from
	// the ring in one pass and built only when a Pull hands them out (the
	// allocator may give one buffer to every event); they come after ready.
	raw     []ring.Entry       // c.entries[:n] of the last pass
	rawCP   *consumerPartition // whose records raw holds
	rawAt   int
	entries []ring.Entry   // scratch of a pass: the records NextBatch read
	perFill int            // the most events one pass delivers
	waiting []*ring.Reader // scratch for WaitAny
	peek    diaspora.Event // fetched by a future's Completed, for the next Wait
	peekErr error
	peeked  bool
	rr      int // round robin over parts
	closed  atomic.Bool

	// slots is parts as made, for AcknowledgeRecord (Close clears parts).
	slots []*consumerPartition
	// While a PullRecords runs (under mu): where passes put records, how
	// many they put, and how many fit.
	sink           RecordSink
	sinkN, sinkMax int

	syncStop, syncDone chan struct{} // the background sync of positions
}

// consumerPartition is a consumer's cursor in one partition.
type consumerPartition struct {
	c      *consumer
	slot   int // its index in c.parts
	part   *partition
	rd     *ring.Reader
	log    *segment.Reader // non-nil while reading history from the log
	want   uint64          // the next ID to deliver
	ended  bool
	desc   diaspora.DataDescriptor // the last one made, reused for events of its size
	relEnd atomic.Uint64           // acknowledged zero-copy space to release, applied under c.mu
	// relApplied is the last relEnd applied: an acknowledgement applies
	// its release at once only when it frees a good part of the ring;
	// smaller ones wait for the next Pull, which applies them first.
	relApplied atomic.Uint64
	// acked is the stored position, the next ID after the last event
	// acknowledged (0: none stored; a stored one is at least 1).
	acked  atomic.Uint64
	loc    string
	redo   failedEntry // an event whose delivery failed: delivered again first
	relAt  uint64      // ring space a copying consumer is done with, released once per batch
	lock   io.Closer   // the ring's lock of the name: one cursor per name
	pos    *segment.PositionMap
	posErr error // why pos could not be opened for writing (a read-only root)
	// logRead counts the events read from the log: every logSeekEvery
	// of them the ring is asked whether it holds the next.
	logRead int
	// in-place events are carved here (under c.mu)
	inPlace   *inPlaceBlock
	inPlaceAt int
}

// failedEntry is an event whose delivery (metadata, selector, allocator)
// failed; it stays the next event of its partition, so nothing is lost.
type failedEntry struct {
	ok         bool
	id, end    uint64
	meta, data []byte
	fromLog    bool
}

func (t *topicState) MakeConsumer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches,
	pool diaspora.ThreadPoolInterface, alloc diaspora.DataAllocator, sel diaspora.DataSelector,
	targets []int, options diaspora.Metadata) (diaspora.ConsumerInterface, error) {
	if err := validConsumerName("consumer", name); err != nil {
		return nil, err
	}
	co, err := parseConsumerOptions(options)
	if err != nil {
		return nil, fmt.Errorf("consumer %q: %w", name, err)
	}
	if pool == nil {
		pool = t.d.pool
	}
	c := &consumer{
		name: name, topic: t, batch: batch, maxBatches: maxBatches, pool: pool,
		alloc: alloc, sel: sel, opts: co, zeroCopy: sel != nil && alloc == nil,
		plainMeta: t.serializer.Metadata().Dump() == `{"type":"default"}`,
		fullSel:   sel != nil && reflect.ValueOf(sel).Pointer() == reflect.ValueOf(diaspora.FullDataSelector).Pointer(),
		perFill:   defaultPerFill,
	}
	c.inPlace = c.plainMeta && alloc == nil && (sel == nil || c.fullSel)
	if batch > 0 {
		c.perFill = min(int(batch), maxPerFill)
	}
	// With an allocator (whose memory is the user's, and may be one buffer
	// reused for every event) a pass reads records, and each is built,
	// and the allocator called for it, only when a Pull hands it out.
	if targets == nil {
		for i := range t.parts {
			targets = append(targets, i)
		}
	}
	seen := map[int]bool{}
	for _, i := range targets {
		if i < 0 || i >= len(t.parts) {
			c.closeParts()
			return nil, fmt.Errorf("%w: consumer %q: target partition %d of topic %q, which has %d", diaspora.ErrInvalidArgument, name, i, t.name, len(t.parts))
		}
		if seen[i] {
			continue
		}
		seen[i] = true
		cp, err := c.attach(t.parts[i])
		if err != nil {
			c.closeParts()
			return nil, err
		}
		cp.slot = len(c.parts)
		c.parts = append(c.parts, cp)
	}
	c.slots = c.parts[:len(c.parts):len(c.parts)]
	if err := t.addClient(c); err != nil {
		c.closeParts()
		return nil, err
	}
	var maps []*segment.PositionMap
	for _, cp := range c.parts {
		if cp.pos != nil {
			maps = append(maps, cp.pos)
		}
	}
	if len(maps) > 0 {
		c.syncStop, c.syncDone = make(chan struct{}), make(chan struct{})
		go c.syncPositions(maps)
	}
	return c, nil
}

// syncPositions makes acknowledged positions durable every ack_interval,
// so that an acknowledgement survives a crash of the operating system
// within that bound (and the death of any process at once, being in the
// page cache). Close syncs what is left.
func (c *consumer) syncPositions(maps []*segment.PositionMap) {
	defer close(c.syncDone)
	t := time.NewTicker(c.opts.AckInterval)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-c.syncStop:
			return
		case <-t.C:
		}
		for _, m := range maps {
			if !m.Dirty() {
				continue
			}
			if err := m.Sync(); err != nil && !logged {
				logged = true
				c.topic.d.logger.Error("cannot make acknowledged positions durable", "consumer", c.name, "topic", c.topic.name, "err", err)
			}
		}
	}
}

// attach takes a reader slot in the partition's ring and positions the
// consumer at its stored position, or at the start (or end) for a new name.
func (c *consumer) attach(part *partition) (_ *consumerPartition, err error) {
	cp := &consumerPartition{c: c, part: part, loc: part.topic.name + "/" + strconv.Itoa(part.index)}
	if c.zeroCopy {
		part.views.Store(true)
	}
	defer func() { // runs last, after a fault became err
		if err != nil && cp.lock != nil {
			cp.lock.Close()
		}
	}()
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, part)
	if cp.lock, err = lockConsumerName(part, c.name); err != nil {
		return nil, err
	}
	pos, next, ok, err := segment.OpenPositionMap(part.dir, c.name)
	if err != nil && (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) {
		// A root this process may not write (read-only, another user's,
		// full): it reads, and each Acknowledge says why it cannot store.
		cp.posErr = err
		next, ok, err = segment.LoadPosition(part.dir, c.name)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %q of %s: load position: %w", c.name, part, err)
	}
	cp.pos = pos
	defer func() {
		if err != nil && pos != nil {
			pos.Close()
		}
	}()
	rd, err := part.ring.Attach(c.name)
	if err != nil {
		return nil, fmt.Errorf("consumer %q of %s: %w", c.name, part, err)
	}
	cp.rd = rd
	rd.SetSpin(0) // the consumer spins itself, over all its partitions
	if ok {
		cp.acked.Store(next)
	} else if c.opts.Latest {
		next = part.ring.Stats().TailID
	}
	cp.want = next
	if err := cp.seek(); err != nil {
		rd.Close()
		return nil, err
	}
	return cp, nil
}

// seek moves the ring reader to want; when the ring no longer holds it and
// the topic is durable, reading starts from the log.
func (cp *consumerPartition) seek() error {
	err := cp.rd.SeekID(cp.want)
	if err == nil {
		// What lies before want is not ours to read: let producers reuse
		// it. The reader attached at the ring's head cache, which can be a
		// whole ring behind; pinning it until an event arrives would wedge
		// a full ring (the event could never be written).
		cp.rd.Release(cp.rd.Position())
		return nil
	}
	if !errors.Is(err, ring.ErrTooOld) {
		return err
	}
	if cp.part.topic.opts.Durability == DurabilityNone {
		return nil // what the ring lost is gone: go on from the oldest it holds
	}
	lr, err := segment.OpenReader(cp.part.dir)
	if err != nil {
		return fmt.Errorf("consumer %q of %s: open log: %w", cp.c.name, cp.part, err)
	}
	if err := lr.Seek(cp.want); err != nil {
		lr.Close()
		return fmt.Errorf("consumer %q of %s: seek log to event %d: %w", cp.c.name, cp.part, cp.want, err)
	}
	cp.log = lr
	return nil
}

// String names the consumer in errors.
func (c *consumer) String() string {
	return fmt.Sprintf("consumer %q of topic %q", c.name, c.topic.name)
}

func (c *consumer) Name() string                             { return c.name }
func (c *consumer) BatchSize() diaspora.BatchSize            { return c.batch }
func (c *consumer) MaxNumBatches() diaspora.MaxNumBatches    { return c.maxBatches }
func (c *consumer) ThreadPool() diaspora.ThreadPoolInterface { return c.pool }
func (c *consumer) Topic() diaspora.TopicHandleInterface     { return c.topic }
func (c *consumer) DataAllocator() diaspora.DataAllocator    { return c.alloc }
func (c *consumer) DataSelector() diaspora.DataSelector      { return c.sel }

func (c *consumer) Process(p diaspora.EventProcessor, timeout time.Duration, max diaspora.NumEvents, pool diaspora.ThreadPoolInterface) error {
	return diaspora.ProcessEvents(c, p, timeout, max, pool)
}

// Pull returns the future of the next event; the waiting happens in Wait,
// which spins briefly and then sleeps on the ring's futex. The future is the
// consumer itself seen through another type, so Pull does not allocate:
// outstanding futures receive events in the order they are waited on.
func (c *consumer) Pull() diaspora.Future[diaspora.Event] {
	return (*pullFuture)(c)
}

type pullFuture consumer

// Completed fetches the next event if one is there, keeping it for Wait.
func (f *pullFuture) Completed() bool {
	c := (*consumer)(f)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readyAt < len(c.ready) || c.rawAt < len(c.raw) || c.readyErr != nil {
		return true
	}
	if !c.peeked {
		ev, err := c.nextLocked(0)
		if err != nil && errors.Is(err, diaspora.ErrTimeout) {
			return false
		}
		c.peek, c.peekErr, c.peeked = ev, err, true
	}
	return true
}

func (f *pullFuture) Wait(timeout time.Duration) (diaspora.Event, error) {
	c := (*consumer)(f)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peeked {
		ev, err := c.peek, c.peekErr
		c.peek, c.peekErr, c.peeked = diaspora.Event{}, nil, false
		return ev, err
	}
	if ev, err, ok := c.takeReady(); ok {
		return ev, err // the common case: no ring access at all
	}
	return c.nextLocked(timeout)
}

// PullBatch hands out the ready batch (filling it first when empty): one
// lock and one look at the rings for up to len(dst) events.
func (c *consumer) PullBatch(dst []diaspora.Event, timeout time.Duration) (int, error) {
	if len(dst) == 0 {
		return 0, fmt.Errorf("%w: %s: PullBatch into no room", diaspora.ErrInvalidArgument, c)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if c.peeked {
		ev, err := c.peek, c.peekErr
		c.peek, c.peekErr, c.peeked = diaspora.Event{}, nil, false
		if err != nil {
			return 0, err
		}
		dst[0], n = ev, 1
		if ev.ID() == diaspora.NoMoreEvents {
			return 1, nil
		}
	}
	if n == 0 && c.readyAt == len(c.ready) && c.rawAt == len(c.raw) && c.readyErr == nil {
		ev, err := c.nextLocked(timeout)
		if err != nil {
			return 0, err
		}
		dst[0], n = ev, 1
		if ev.ID() == diaspora.NoMoreEvents {
			return 1, nil
		}
	}
	for n < len(dst) && c.readyAt < len(c.ready) {
		dst[n] = c.ready[c.readyAt]
		c.readyAt++
		n++
	}
	if n == 0 && c.rawAt < len(c.raw) {
		// Built one at a time: the allocator's memory may be one buffer.
		ev, err, _ := c.takeReady()
		if err != nil {
			return 0, err
		}
		dst[0], n = ev, 1
	}
	if n == 0 { // only an error was left after the last batch
		err := c.readyErr
		c.readyErr = nil
		return 0, err
	}
	return n, nil
}

// Unread puts events of the last PullBatch back in front of the ready
// batch, so that the next pulls return them first. Their ring space: a
// copying consumer's events hold none (they were built from it), a
// zero-copy consumer's is released only by Acknowledge.
func (c *consumer) Unread(evs []diaspora.Event) {
	if len(evs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rest := c.ready[c.readyAt:]
	q := make([]diaspora.Event, 0, len(evs)+1+len(rest))
	q = append(q, evs...)
	if c.peeked {
		// A Completed fetched what follows evs: it comes after them.
		if c.peekErr == nil {
			q = append(q, c.peek)
		} else if c.readyErr == nil {
			c.readyErr = c.peekErr
		}
		c.peek, c.peekErr, c.peeked = diaspora.Event{}, nil, false
	}
	q = append(q, rest...)
	clear(c.ready)
	c.ready, c.readyAt = q, 0
}

// Events delivered per pass over a partition: a Pull that finds the ring
// has records delivers up to this many at once.
const (
	defaultPerFill = 64
	maxPerFill     = 4096
)

// takeReady hands out the next event of the ready batch, or the error met
// after it; c.mu is held.
func (c *consumer) takeReady() (diaspora.Event, error, bool) {
	if c.readyAt < len(c.ready) {
		// The slot is not cleared (one pointer write fewer per event): the
		// next pass overwrites it, so at most a batch stays referenced.
		ev := c.ready[c.readyAt]
		c.readyAt++
		return ev, nil, true
	}
	if c.rawAt < len(c.raw) {
		ev, err := c.deliverRaw()
		return ev, err, true
	}
	if c.readyErr != nil {
		err := c.readyErr
		c.readyErr = nil
		return diaspora.Event{}, err, true
	}
	return diaspora.Event{}, nil, false
}

// deliverRaw builds the next raw entry. When that fails the entry stays
// next (the next Pull tries it again); c.mu is held.
func (c *consumer) deliverRaw() (_ diaspora.Event, err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, c)
	return c.deliverRawLocked()
}

// deliverRawLocked is deliverRaw under the caller's fault guard.
func (c *consumer) deliverRawLocked() (diaspora.Event, error) {
	cp, e := c.rawCP, &c.raw[c.rawAt]
	ev, err := cp.deliver(e.ID, e.Meta, e.Data, e.End, false)
	if err != nil {
		cp.redo = failedEntry{} // it is retried from raw, in its place
		return diaspora.Event{}, err
	}
	c.rawAt++
	return ev, nil
}

// fill delivers up to perFill events of cp: it reads the records a pass
// finds committed (ring.Reader.NextBatch, one look at the ring), delivers
// the first, and builds the others into the ready batch (with an
// allocator, or past a delivery that fails, they stay raw, to be built
// when handed out). ok is false when cp had none. c.mu is held, and the
// caller's fault guard covers the pass. The ring space of a copying
// consumer's events is released by the next pass, once they were all
// handed out.
func (c *consumer) fill(cp *consumerPartition) (diaspora.Event, bool, error) {
	if cp.redo.ok || cp.log != nil {
		return cp.tryNext() // a retry, or history from the log: one at a time
	}
	if cap(c.entries) < c.perFill {
		c.entries = make([]ring.Entry, c.perFill)
	}
	want := c.perFill
	if c.sink != nil {
		want = min(want, c.sinkMax-c.sinkN)
	}
	n, err := cp.rd.NextBatch(c.entries[:want])
	if errors.Is(err, ring.ErrEndOfStream) {
		cp.ended = true
		return diaspora.Event{}, false, nil
	}
	if err != nil {
		return diaspora.Event{}, false, fmt.Errorf("consumer %q of %s: %w", c.name, cp.part, err)
	}
	// Records before the stored position are not ours to deliver: skip
	// them (they come first, the IDs rising).
	k := 0
	for k < n && c.entries[k].ID < cp.want {
		k++
	}
	if k == n {
		if n > 0 {
			cp.rd.Release(c.entries[n-1].End)
		}
		return diaspora.Event{}, false, nil
	}
	if c.sink != nil {
		ok, err := c.fillSink(cp, c.entries[k:n])
		return diaspora.Event{}, ok, err
	}
	c.raw, c.rawAt, c.rawCP = c.entries[k:n], 0, cp
	ev, err := c.deliverRawLocked()
	if err != nil {
		return diaspora.Event{}, false, err
	}
	if c.alloc == nil {
		c.ready, c.readyAt = c.ready[:0], 0
		for c.rawAt < len(c.raw) {
			next, err := c.deliverRawLocked()
			if err != nil {
				break // it stays raw: its turn comes after the ready ones
			}
			c.ready = append(c.ready, next)
		}
	}
	return ev, true, nil
}

// releaseDone lets producers reuse the space of the events a copying
// consumer delivered: one store for a whole batch, made once the batch was
// handed out (a pass starts only then), so that space is never released
// for events a Pull has not returned.
func (cp *consumerPartition) releaseDone() {
	if cp.relAt > 0 {
		cp.rd.Release(cp.relAt)
		cp.relAt = 0
	}
}

// nextLocked returns the next event of any target partition, round robin;
// c.mu is held.
func (c *consumer) nextLocked(timeout time.Duration) (_ diaspora.Event, err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, c)
	if c.closed.Load() {
		return diaspora.Event{}, fmt.Errorf("%w: consumer %q of topic %q", diaspora.ErrClosed, c.name, c.topic.name)
	}
	var start time.Time
	spun := false
	for spins := 0; ; spins++ {
		for _, cp := range c.parts {
			if c.zeroCopy {
				cp.applyRelease()
			} else {
				cp.releaseDone()
			}
		}
		ended := 0
		for range c.parts {
			cp := c.parts[c.rr]
			c.rr = (c.rr + 1) % len(c.parts)
			if cp.ended {
				ended++
				continue
			}
			ev, ok, err := c.fill(cp)
			if err != nil {
				return diaspora.Event{}, err
			}
			if ok {
				return ev, nil
			}
			if cp.ended {
				ended++
			}
		}
		if ended == len(c.parts) {
			return diaspora.NewEvent(&event{id: diaspora.NoMoreEvents, cp: nil}), nil
		}
		if !spun && timeout != 0 && spins%spinClock != 0 {
			// Spinning: look at the rings again at once; the clock (tens
			// of ns on a VM) and a yield (a wake-up of another thread,
			// often) only every spinClock rounds, so that an event is seen
			// within a round of its commit.
			spinWait()
			continue
		}
		if timeout == 0 && c.sink != nil && c.sinkN > 0 {
			return diaspora.Event{}, errNoneReady // a further pass of a PullRecords
		}
		if start.IsZero() {
			start = time.Now()
		}
		elapsed := time.Since(start)
		if timeout >= 0 && elapsed >= timeout {
			return diaspora.Event{}, fmt.Errorf("%w: consumer %q of topic %q: no event within %v", diaspora.ErrTimeout, c.name, c.topic.name, timeout)
		}
		if !spun {
			if elapsed < c.opts.Spin {
				runtime.Gosched()
				continue
			}
			spun = true
		}
		// Sleep at most closeCheck at a time: Close waits for this Pull to
		// return (it holds c.mu), so a Pull without a timeout must notice.
		if c.closed.Load() {
			return diaspora.Event{}, fmt.Errorf("%w: %s", diaspora.ErrClosed, c)
		}
		if c.zeroCopy {
			// Caught up, and the events it holds keep producers from
			// writing the next: waiting could only end in their timeout.
			if err := c.holdsRing(); err != nil {
				return diaspora.Event{}, err
			}
		}
		wait := closeCheck
		if timeout >= 0 {
			wait = min(wait, timeout-elapsed)
		}
		if len(c.parts) > 1 {
			// Several partitions: one futex_waitv over all their rings.
			rds := c.waiting[:0]
			for _, cp := range c.parts {
				if !cp.ended && cp.log == nil {
					rds = append(rds, cp.rd)
				}
			}
			c.waiting = rds
			if len(rds) == 0 {
				continue // only logs left to read: tryNext makes progress
			}
			if err := ring.WaitAny(rds, wait); err != nil && !errors.Is(err, ring.ErrTimeout) {
				return diaspora.Event{}, fmt.Errorf("%s: %w", c, err)
			}
			continue
		}
		// One partition: sleep on its ring's futex, and take what comes.
		cp := c.parts[0]
		if cp.ended || cp.log != nil {
			continue
		}
		e, err := cp.rd.Next(wait)
		switch {
		case err == nil:
			if e.ID < cp.want {
				cp.rd.Release(e.End)
				continue
			}
			if c.sink != nil {
				if err := cp.sinkEntry(&e); err != nil {
					return diaspora.Event{}, cp.failed(failedEntry{ok: true, id: e.ID, end: e.End, meta: e.Meta, data: e.Data}, err)
				}
				cp.releaseDone()
				return diaspora.Event{}, nil
			}
			ev, err := cp.deliver(e.ID, e.Meta, e.Data, e.End, false)
			cp.releaseDone()
			return ev, err
		case errors.Is(err, ring.ErrTimeout):
		case errors.Is(err, ring.ErrEndOfStream):
			cp.ended = true
		default:
			return diaspora.Event{}, fmt.Errorf("consumer %q of %s: %w", c.name, cp.part, err)
		}
	}
}

// spinClock: a spinning Pull reads the clock and yields once per this many
// looks at its rings.
const spinClock = 16

// spinWait burns a few cycles between two looks at the rings without
// touching memory another core writes.
//
//go:noinline
func spinWait() {
	for range 8 {
		spinNop()
	}
}

//go:noinline
func spinNop() {}

// ErrHoldsRing is what a zero-copy consumer's Pull returns when the events it
// received and has not acknowledged fill its ring so that producers cannot
// write the next one: waiting would never end. Acknowledging (which frees
// the space up to the event), or reading through a DataAllocator, ends it.
var ErrHoldsRing = errors.New("a zero-copy consumer holds the ring")

// holdsRing returns ErrHoldsRing, saying with what, when producers wait for
// space that this consumer's unacknowledged events pin; c.mu is held.
func (c *consumer) holdsRing() error {
	for _, cp := range c.parts {
		if cp.ended || cp.log != nil {
			continue
		}
		cp.applyRelease()
		if held, ok := cp.rd.BlocksProducers(); ok {
			return fmt.Errorf("%w: consumer %q of %s holds %d bytes of events it received and has not acknowledged, in a ring of %d bytes, and producers are waiting for space: acknowledge events (each Acknowledge frees the ring up to its event), or give the consumer a DataAllocator so that it copies events out of the ring",
				ErrHoldsRing, c.name, cp.part, held, cp.part.ring.Capacity())
		}
	}
	return nil
}

// logSeekEvery: a consumer reading the log looks whether the ring holds
// its next event once per this many events.
const logSeekEvery = 64

// closeCheck bounds each sleep of a Pull, so that Close is seen.
const closeCheck = 100 * time.Millisecond

// tryNext returns the partition's next event if one is there.
func (cp *consumerPartition) tryNext() (diaspora.Event, bool, error) {
	c := cp.c
	if f := cp.redo; f.ok {
		ev, err := cp.deliver(f.id, f.meta, f.data, f.end, f.fromLog)
		return ev, err == nil, err
	}
	for cp.log != nil {
		if cp.logRead++; cp.logRead%logSeekEvery == 0 {
			// The ring may hold the wanted event by now: read it there,
			// and let producers have the space the reader pinned since it
			// attached (they wait for it: in one process, a late consumer
			// reading a long log held its producers until their timeout).
			if err := cp.rd.SeekID(cp.want); err == nil {
				cp.log.Close()
				cp.log = nil
				cp.rd.Release(cp.rd.Position())
				break
			}
		}
		e, err := cp.log.Next()
		if errors.Is(err, io.EOF) {
			// The log is read up to what is archived; the ring holds the
			// rest, pinned since the reader attached.
			cp.log.Close()
			cp.log = nil
			if err := cp.rd.SeekID(cp.want); err == nil {
				cp.rd.Release(cp.rd.Position())
			} else if !errors.Is(err, ring.ErrTooOld) {
				return diaspora.Event{}, false, fmt.Errorf("consumer %q of %s: %w", c.name, cp.part, err)
			}
			break
		}
		if err != nil {
			return diaspora.Event{}, false, fmt.Errorf("consumer %q of %s: read log: %w", c.name, cp.part, err)
		}
		if e.ID < cp.want {
			continue
		}
		ev, err := cp.deliver(e.ID, e.Meta, e.Data, 0, true)
		return ev, err == nil, err
	}
	for {
		e, ok, err := cp.rd.TryNext()
		if errors.Is(err, ring.ErrEndOfStream) {
			cp.ended = true
			return diaspora.Event{}, false, nil
		}
		if err != nil {
			return diaspora.Event{}, false, fmt.Errorf("consumer %q of %s: %w", c.name, cp.part, err)
		}
		if !ok {
			return diaspora.Event{}, false, nil
		}
		if e.ID < cp.want {
			cp.rd.Release(e.End)
			continue
		}
		ev, err := cp.deliver(e.ID, e.Meta, e.Data, e.End, false)
		return ev, err == nil, err
	}
}

// deliver builds the event: metadata deserialized (a copy), data selected and
// copied into the allocator's memory, or viewed in place in the ring. When
// it fails (damaged metadata, a selector or allocator that fails or
// panics), the event stays the partition's next: the next Pull tries it
// again, and no space it holds is released meanwhile.
func (cp *consumerPartition) deliver(id uint64, meta, data []byte, end uint64, fromLog bool) (diaspora.Event, error) {
	c := cp.c
	if c.inPlace && !fromLog && inPlaceFits(len(meta)) {
		return cp.deliverInPlace(id, meta, data, end)
	}
	ev, err := cp.build(id, meta, data, fromLog)
	if err != nil {
		if !cp.redo.ok && fromLog {
			// The log reader reuses its buffer.
			meta, data = bytes.Clone(meta), bytes.Clone(data)
		}
		return diaspora.Event{}, cp.failed(failedEntry{ok: true, id: id, end: end, meta: meta, data: data, fromLog: fromLog}, err)
	}
	cp.redo = failedEntry{}
	cp.want = id + 1
	ev.id, ev.cp, ev.end = id, cp, end
	// A copying consumer is done with the ring space once it has the
	// event (released with its batch); a zero-copy consumer frees space
	// only on Acknowledge.
	if !fromLog && !c.zeroCopy {
		cp.relAt = end
	}
	return diaspora.NewEvent(ev), nil
}

// failed keeps the event whose delivery failed as the partition's next,
// for the next Pull, and says so.
func (cp *consumerPartition) failed(redo failedEntry, err error) error {
	cp.redo = redo
	return fmt.Errorf("consumer %q of %s: event %d: %w (the event is not skipped: the next Pull delivers it again)", cp.c.name, cp.part, redo.id, err)
}

// deliverInPlace is deliver for an in-place event (inplace.go): the
// default serializer's metadata, and the data read in place or not at all.
func (cp *consumerPartition) deliverInPlace(id uint64, meta, data []byte, end uint64) (diaspora.Event, error) {
	c := cp.c
	if len(meta) == 0 {
		// Not {} (which is kept as no bytes): no metadata at all, refused
		// as the shape check refuses it.
		_, err := diaspora.MetadataOfShape(meta)
		return diaspora.Event{}, cp.failed(failedEntry{ok: true, id: id, end: end, meta: meta, data: data}, err)
	}
	mdLen := len(meta)
	if isEmptyObject(meta) {
		mdLen = 0
	}
	ev := cp.newInPlace(mdLen)
	ev.mdLen = uint32(mdLen)
	if mdLen > 0 {
		// Copied, then checked: the ring's bytes may change under a check.
		copy(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(ev), inPlaceSize)), mdLen), meta)
		if _, err := diaspora.MetadataOfShape(ev.metaBytes()); err != nil {
			cp.inPlaceAt = int(ev.off) // the carved room is not used
			return diaspora.Event{}, cp.failed(failedEntry{ok: true, id: id, end: end, meta: meta, data: data}, err)
		}
	}
	ev.id, ev.end = id, end
	ev.data, ev.dataLen, ev.dataCap = 0, 0, 0
	if c.sel != nil {
		ev.setData(data)
	}
	cp.redo = failedEntry{}
	cp.want = id + 1
	if !c.zeroCopy {
		cp.relAt = end
	}
	return diaspora.NewEvent(ev), nil
}

// build makes the event of a record, or says why it cannot.
func (cp *consumerPartition) build(id uint64, meta, data []byte, fromLog bool) (*event, error) {
	c := cp.c
	var md diaspora.Metadata
	var err error
	if c.plainMeta {
		// Shape only: the full parse happens when the user decodes it.
		md, err = diaspora.MetadataOfShape(c.copyMeta(meta))
	} else {
		err = userCall("deserializer", func() (err error) { md, err = c.topic.serializer.Deserialize(meta); return })
	}
	if err != nil {
		return nil, err
	}
	if c.sel == nil {
		ev := c.newEvent()
		ev.md = md
		return ev, nil
	}
	if c.fullSel && c.alloc == nil && !fromLog {
		// Everything, in place: no selector call, no descriptor.
		ev := c.newEvent()
		ev.md = md
		if len(data) > 0 {
			ev.seg[0] = data[:len(data):len(data)]
		}
		return ev, nil
	}
	var sel diaspora.DataDescriptor
	if err := userCall("data selector", func() (err error) { sel, err = c.sel(md, cp.descriptor(len(data))); return }); err != nil {
		return nil, err
	}
	if !sel.IsZero() && sel.BaseSize() != len(data) {
		return nil, fmt.Errorf("%w: the data selector returned a view of %d bytes of data for an event of %d",
			diaspora.ErrInvalidArgument, sel.BaseSize(), len(data))
	}
	if sel.Size() == len(data) && len(data) > 0 && c.alloc == nil && !fromLog {
		// Everything is selected (selections never overlap): one view, in
		// the event itself.
		ev := c.newEvent()
		ev.md = md
		ev.seg[0] = data[:len(data):len(data)]
		return ev, nil
	}
	view, err := cp.selectData(md, sel, data, fromLog)
	if err != nil {
		return nil, err
	}
	ev := c.newEvent()
	ev.md = md
	heap := fromLog && c.alloc == nil && len(view) > 0
	switch {
	case len(view) == 1 && view[0] != nil && !heap:
		ev.seg[0] = view[0] // one piece (an allocator's buffer): nothing more to carve
	case view != nil:
		x := c.views.get(eventSlab)
		x.views, x.heap = view, heap
		ev.x = x
	}
	return ev, nil
}

// selectData gives the selected bytes: in place in the ring (zero copy),
// or copied into the allocator's memory, or into a new buffer for an event
// read from the log.
func (cp *consumerPartition) selectData(md diaspora.Metadata, sel diaspora.DataDescriptor, data []byte, fromLog bool) (diaspora.DataView, error) {
	c := cp.c
	if sel.IsZero() {
		return nil, nil
	}
	// Selections are in order and never overlap: one of the whole size is
	// the data itself, copied without flattening the descriptor.
	whole := sel.Size() == len(data)
	switch {
	case c.alloc != nil:
		var view diaspora.DataView
		if err := userCall("data allocator", func() (err error) { view, err = c.alloc(md, sel); return }); err != nil {
			return nil, err
		}
		if view.Size() < sel.Size() {
			return nil, fmt.Errorf("%w: the allocator gave %d bytes for %d selected", diaspora.ErrInvalidArgument, view.Size(), sel.Size())
		}
		if whole {
			view.Write(data, 0)
			return view, nil
		}
		off := 0
		for _, s := range sel.Flatten() {
			off += view.Write(data[s.Offset:s.Offset+s.Size], off)
		}
		return view, nil
	case fromLog:
		// The log reader reuses its buffer: the view must own its bytes.
		buf := make([]byte, 0, sel.Size())
		for _, s := range sel.Flatten() {
			buf = append(buf, data[s.Offset:s.Offset+s.Size]...)
		}
		return diaspora.DataView{buf}, nil
	default:
		segs := sel.Flatten()
		view := make(diaspora.DataView, 0, len(segs))
		for _, s := range segs {
			view = append(view, data[s.Offset:s.Offset+s.Size:s.Offset+s.Size])
		}
		return view, nil
	}
}

// userCall runs a user's plug-in (selector, allocator, deserializer): its
// error, or a panic of it, becomes an error naming it.
func userCall(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", what, r)
		}
	}()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// descriptor describes an event's data for the selector. Descriptors are
// values that views never change, so one serves every event of its size.
func (cp *consumerPartition) descriptor(size int) diaspora.DataDescriptor {
	if cp.desc.Size() != size || (size == 0 && cp.desc.Location() == "") {
		cp.desc = diaspora.NewDataDescriptor(cp.loc, size)
	}
	return cp.desc
}

const (
	eventSlab     = 64       // events per block
	metaArena     = 64 << 10 // bytes per block of metadata copies
	metaArenaMost = 1 << 10  // larger metadata gets its own allocation
)

func (c *consumer) newEvent() *event {
	return c.slab.get(eventSlab)
}

// emptyMeta is the bytes of every event whose metadata is {} (Metadata.Bytes
// is read-only).
var emptyMeta = []byte("{}")

func isEmptyObject(b []byte) bool { return len(b) == 2 && b[0] == '{' && b[1] == '}' }

// copyMeta copies metadata out of the ring: the ring space is reused.
func (c *consumer) copyMeta(b []byte) []byte {
	if isEmptyObject(b) {
		return emptyMeta // the commonest metadata: shared, as Metadata{} shares it
	}
	if len(b) > metaArenaMost {
		return bytes.Clone(b)
	}
	// An index moves, not the arena's slice (a pointer write per event).
	if len(c.arena)-c.arenaAt < len(b) {
		c.arena, c.arenaAt = make([]byte, metaArena), 0
	}
	n := c.arenaAt
	c.arenaAt += copy(c.arena[n:], b)
	return c.arena[n:c.arenaAt:c.arenaAt]
}

// applyRelease frees the space acknowledged by a zero-copy consumer; c.mu
// is held.
func (cp *consumerPartition) applyRelease() {
	if e := cp.relEnd.Load(); e > cp.relApplied.Load() {
		cp.rd.Release(e)
		cp.relApplied.Store(e)
	}
}

// acknowledge stores the position after id durably and, for a zero-copy
// consumer, lets the ring reuse the space up to the event.
func (cp *consumerPartition) acknowledge(id uint64, end uint64) (err error) {
	c := cp.c
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, cp.part)
	if c.closed.Load() {
		return fmt.Errorf("%w: consumer %q of topic %q", diaspora.ErrClosed, c.name, c.topic.name)
	}
	if id+1 <= cp.acked.Load() {
		return nil // already covered by a later acknowledgement
	}
	if cp.pos == nil {
		return fmt.Errorf("consumer %q of %s: acknowledge event %d: %w", c.name, cp.part, id, cp.posErr)
	}
	// A store into the mapped position: it survives the death of any
	// process at once, and the background sync (or, with ack_sync, the one
	// below) makes it survive a crash of the operating system.
	if err := cp.pos.Store(id + 1); err != nil {
		return fmt.Errorf("consumer %q of %s: acknowledge event %d: %w", c.name, cp.part, id, err)
	}
	if c.opts.AckSync {
		if err := cp.pos.Sync(); err != nil {
			return fmt.Errorf("consumer %q of %s: acknowledge event %d: %w", c.name, cp.part, id, err)
		}
	}
	// Published once stored (and, with ack_sync, durable): an earlier
	// event's Acknowledge that returns at once above has that promise too.
	for {
		cur := cp.acked.Load()
		if id+1 <= cur || cp.acked.CompareAndSwap(cur, id+1) {
			break
		}
	}
	if c.zeroCopy && end > 0 {
		// The reader belongs to whoever holds c.mu (a Pull); hand the
		// release over, and apply it now if no Pull is running.
		for {
			cur := cp.relEnd.Load()
			if end <= cur || cp.relEnd.CompareAndSwap(cur, end) {
				break
			}
		}
		if cp.relEnd.Load()-cp.relApplied.Load() >= uint64(cp.part.ring.Capacity()/8) && c.mu.TryLock() {
			// Unlocked by defer: a fault (a truncated ring) must not leave
			// the consumer locked for every later Pull and Close.
			func() {
				defer c.mu.Unlock()
				cp.applyRelease()
			}()
		}
	}
	return nil
}

// Lag is how many events of its partitions the consumer's name has not
// acknowledged yet: the events written after its stored positions.
func (c *consumer) Lag() (lag uint64, err error) {
	if c.closed.Load() {
		return 0, fmt.Errorf("%w: consumer %q of topic %q", diaspora.ErrClosed, c.name, c.topic.name)
	}
	for _, cp := range c.parts {
		n, err := cp.lag()
		if err != nil {
			return lag, err
		}
		lag += n
	}
	return lag, nil
}

func (cp *consumerPartition) lag() (n uint64, err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, cp.part)
	if tail, acked := cp.part.ring.TailID(), cp.acked.Load(); tail > acked {
		n = tail - acked
	}
	return n, nil
}

// Unsubscribe detaches the consumer from its rings (it no longer holds
// space back); its stored positions stay. Pull then fails with ErrClosed.
func (c *consumer) Unsubscribe() error { return c.Close() }

// Close frees the reader slots and the name. Zero-copy data of its events
// no longer pins ring space: producers may write other events over it.
func (c *consumer) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.syncStop != nil {
		close(c.syncStop)
		<-c.syncDone
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ready)
	c.ready, c.readyAt, c.readyErr = nil, 0, nil
	c.raw, c.rawAt, c.rawCP = nil, 0, nil
	err := c.closeParts()
	c.topic.removeClient(c)
	return err
}

// closeParts lets go of every partition, also of those whose ring faults
// (truncated under us): their error is returned, the rest still closed.
func (c *consumer) closeParts() error {
	var errs []error
	for _, cp := range c.parts {
		errs = append(errs, cp.close())
	}
	c.parts = nil
	return errors.Join(errs...)
}

func (cp *consumerPartition) close() (err error) {
	if cp.lock != nil {
		defer cp.lock.Close() // drops the lock on the name
	}
	var posErr error
	if cp.pos != nil {
		// Durable on Close, whatever the interval.
		if perr := cp.pos.Close(); perr != nil {
			posErr = fmt.Errorf("consumer %q of %s: %w", cp.c.name, cp.part, perr)
		}
	}
	if cp.log != nil {
		cp.log.Close()
	}
	defer func() { err = errors.Join(err, posErr) }()
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, cp.part)
	return cp.rd.Close()
}

// event is a delivered event. Its data is seg[0] when it is one piece in
// place (no DataView to write per event), else x.views. Events are carved
// from blocks, and at millions a second the bytes of an event are what
// paces the garbage collector: what only some events need is behind x.
type event struct {
	cp  *consumerPartition
	md  diaspora.Metadata
	seg [1][]byte
	id  uint64
	end uint64
	x   *eventViews
}

// eventViews is the data of an event that is not one piece in place: a
// selection of it, an allocator's memory, or a buffer of an event read
// back from the log.
type eventViews struct {
	views diaspora.DataView
	heap  bool // views are a Go buffer (an event read back from the log)
}

// DataOnGoHeap reports whether the event's data is a buffer of the Go heap
// (an event read back from the durable log, without an allocator) rather
// than the ring's shared memory or an allocator's. The C library pins such
// data while C holds it.
func (e *event) DataOnGoHeap() bool { return e.x != nil && e.x.heap }

func (e *event) Metadata() diaspora.Metadata { return e.md }
func (e *event) Data() diaspora.DataView {
	if e.seg[0] != nil {
		return e.seg[:]
	}
	if e.x != nil {
		return e.x.views
	}
	return nil
}
func (e *event) ID() diaspora.EventID { return e.id }

func (e *event) Partition() diaspora.PartitionInfo {
	if e.cp == nil {
		return diaspora.PartitionInfo{}
	}
	return e.cp.part.topic.infos[e.cp.part.index]
}

// PartitionIndex is the index of the event's partition in its topic (-1
// for the end of the stream): for the C library, which asks it of every
// event of a batch, where Partition copies the partition's information.
func (e *event) PartitionIndex() int {
	if e.cp == nil {
		return -1
	}
	return e.cp.part.index
}

func (e *event) Acknowledge() error {
	if e.cp == nil {
		return nil // NoMoreEvents
	}
	return e.cp.acknowledge(e.id, e.end)
}
