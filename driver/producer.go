package driver

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
)

// producer pushes events into the rings of a topic's partitions. Validation,
// partition selection and serialization run inline or on the thread pool;
// events are then queued per partition and written into the ring in batches:
// one claim (one atomic operation) and one commit per batch, the data copied
// once, from the caller's memory into the ring.
type producer struct {
	name       string
	topic      *topicState
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	ordering   diaspora.Ordering
	pool       diaspora.ThreadPoolInterface
	timeout    time.Duration
	sync       bool // durability "sync": a push completes once fsynced in the log

	parts []*producerPartition

	// Strict ordering on a pool with threads: pushes are processed in order
	// by one drain task at a time.
	serialMu sync.Mutex
	serialQ  []pushRequest
	draining bool

	// active counts Push and Claim calls in progress; Close waits for
	// them after it set closed, so none writes to a ring after Close.
	active atomic.Int64
	// pooled counts pushes handed to the pool and not processed yet;
	// Flush waits until it is zero.
	pooledMu   sync.Mutex
	pooledCond sync.Cond
	pooled     int
	claims     sync.WaitGroup // Claims not yet committed or aborted
	openMu     sync.Mutex
	open       *claim      // open claims, a list linked through the claims
	claimSlab  slab[claim] // under openMu: where new claims are carved
	// slots bounds the pushes handed to the pool and not yet queued on a
	// partition to MaxNumBatches batches: Push blocks on it (back-pressure).
	slots  chan struct{}
	closed atomic.Bool

	lingerState // staging of inline pushes (stage.go)
}

type pushRequest struct {
	md        diaspora.Metadata
	data      diaspora.DataView
	partition int
	f         *pushFuture
}

// producerPartition is a producer's queue for one partition.
type producerPartition struct {
	p     *producer
	part  *partition
	index int

	mu      sync.Mutex
	pending []queuedEvent
	queued  atomic.Int64 // len(pending), read without mu on the direct path
	lastEnd uint64       // end of the last committed batch, for Flush under sync

	flushMu sync.Mutex // one batch writer at a time keeps push order
	claim   ring.Claim
	sizes   []ring.RecordSize
	scratch []byte // serialized metadata of a direct write
	batchQ  []queuedEvent
	// done futures of direct writes, carved from blocks so that a push
	// allocates once per block; a kept future keeps its block alive.
	doneSlab slab[doneFuture]

	metaArena []byte           // under mu: serialized metadata of queued events
	futSlab   slab[pushFuture] // under mu: futures of queued events

	// The stage of inline pushes (stage.go), under flushMu.
	stage       ring.Batch
	cover       func(lastID uint64) // the ID lease's cover
	stageSeq    uint64              // sequence number of the next staged event
	stageStart  int64               // monoNow of the stage's first event
	lastPush    int64               // monoNow of the last push that read the clock
	futBlock    *stagedFutures      // where the next staged future is carved
	futNext     int
	stageBlocks []*stagedFutures // the blocks of the staged events' futures, in order
	// doneSeq: every staged event numbered below it has its id or error.
	doneSeq atomic.Uint64
	// stagedAt is, while the stage is open, stageStart (adaptive) or 1
	// (a fixed batch size), else 0: read without the lock.
	stagedAt atomic.Int64
}

// doneFuture is the future of an event written before Push returned.
type doneFuture struct{ id diaspora.EventID }

func (f *doneFuture) Wait(time.Duration) (diaspora.EventID, error) { return f.id, nil }
func (f *doneFuture) Completed() bool                              { return true }

const doneSlab = 512

// done returns a completed future of id; flushMu is held.
func (pp *producerPartition) done(id diaspora.EventID) diaspora.Future[diaspora.EventID] {
	f := pp.doneSlab.get(doneSlab)
	f.id = id
	return f
}

// slab hands out zero Ts carved from blocks: what is carved from one block
// is allocated once, and one kept keeps its block. Only an index moves per
// value: re-slicing the block instead would write a pointer per value, and
// every pointer write pays the garbage collector's write barrier while it
// marks, which at millions of events a second it nearly always does.
type slab[T any] struct {
	blk  []T
	next int
}

// get returns the next zero T, making a block of n when the last is used up.
func (s *slab[T]) get(n int) *T {
	if s.next == len(s.blk) {
		s.blk, s.next = make([]T, n), 0
	}
	v := &s.blk[s.next]
	s.next++
	return v
}

type queuedEvent struct {
	meta []byte
	data diaspora.DataView
	f    *pushFuture
}

func (t *topicState) MakeProducer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches,
	ordering diaspora.Ordering, pool diaspora.ThreadPoolInterface, options diaspora.Metadata) (diaspora.ProducerInterface, error) {
	if err := validConsumerName("producer", name); err != nil {
		return nil, err
	}
	po, err := parseProducerOptions(options)
	if err != nil {
		return nil, fmt.Errorf("producer %q: %w", name, err)
	}
	if pool == nil {
		pool = t.d.pool
	}
	p := &producer{
		name: name, topic: t, batch: batch, maxBatches: maxBatches, ordering: ordering, pool: pool,
		timeout: t.opts.PushTimeout, sync: t.opts.Durability == DurabilitySync,
	}
	if po.PushTimeout > 0 {
		p.timeout = po.PushTimeout
	}
	perBatch := int(batch)
	if batch == diaspora.AdaptiveBatchSize {
		perBatch = adaptiveBatchHint
	}
	if perBatch < 1 || maxBatches < 1 {
		return nil, fmt.Errorf("producer %q: %w: BatchSize %d, MaxNumBatches %d: want BatchSize AdaptiveBatchSize (-1) or >= 1 and MaxNumBatches >= 1",
			name, diaspora.ErrInvalidArgument, int(batch), int(maxBatches))
	}
	// Clamped to maxPending pushes, and at least 1: the product of values
	// that skipped the root package's checks could overflow an int (to 0,
	// an unbuffered channel that blocks Push forever; negative, a panic).
	const maxPending = 1 << 26
	mb := min(int(maxBatches), maxPending)
	p.slots = make(chan struct{}, min(perBatch, maxPending/mb)*mb)
	p.pooledCond.L = &p.pooledMu
	for i, part := range t.parts {
		if err := part.addProducer(name); err != nil {
			p.removeProducers()
			return nil, err
		}
		p.parts = append(p.parts, &producerPartition{p: p, part: part, index: i})
	}
	if err := t.addClient(p); err != nil {
		p.removeProducers()
		return nil, err
	}
	if batch == diaspora.AdaptiveBatchSize && !p.sync {
		p.startLinger()
	}
	return p, nil
}

// removeProducers gives up the producer slots this producer counts in.
func (p *producer) removeProducers() error {
	var errs []error
	for _, pp := range p.parts {
		errs = append(errs, pp.part.removeProducer())
	}
	return errors.Join(errs...)
}

// String names the producer in errors.
func (p *producer) String() string {
	return fmt.Sprintf("producer %q of topic %q", p.name, p.topic.name)
}

func (p *producer) Name() string                             { return p.name }
func (p *producer) BatchSize() diaspora.BatchSize            { return p.batch }
func (p *producer) MaxNumBatches() diaspora.MaxNumBatches    { return p.maxBatches }
func (p *producer) Ordering() diaspora.Ordering              { return p.ordering }
func (p *producer) ThreadPool() diaspora.ThreadPoolInterface { return p.pool }
func (p *producer) Topic() diaspora.TopicHandleInterface     { return p.topic }

// Push queues an event. Errors (validation, selection, a closed producer, a
// full ring that never drains) come out of the future's Wait.
func (p *producer) Push(md diaspora.Metadata, data diaspora.DataView, partition int) diaspora.Future[diaspora.EventID] {
	if p.pool.ThreadCount() == 0 && !p.sync {
		return p.pushInline(md, data, partition)
	}
	// Dekker with Close: it sets closed, then waits for active to drain.
	p.active.Add(1)
	defer p.active.Add(-1)
	if p.closed.Load() {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("%w: producer %q of topic %q", diaspora.ErrClosed, p.name, p.topic.name))
	}
	if p.pool.ThreadCount() == 0 {
		return p.process(md, data, partition, nil)
	}
	f := &pushFuture{prod: p}
	req := pushRequest{md: md, data: data, partition: partition, f: f}
	p.slots <- struct{}{}
	p.addPooled(1)
	if p.ordering == diaspora.Strict {
		p.serialMu.Lock()
		p.serialQ = append(p.serialQ, req)
		start := !p.draining
		p.draining = true
		p.serialMu.Unlock()
		if start {
			p.pool.PushWork(p.drainSerial, 0)
		}
		return f
	}
	p.pool.PushWork(func() { p.process(req.md, req.data, req.partition, req.f); <-p.slots; p.addPooled(-1) }, 0)
	return f
}

// addPooled counts pushes handed to the pool; at zero it wakes Flush.
func (p *producer) addPooled(n int) {
	p.pooledMu.Lock()
	p.pooled += n
	if p.pooled == 0 {
		p.pooledCond.Broadcast()
	}
	p.pooledMu.Unlock()
}

// drainSerial processes queued pushes in order; one runs at a time.
func (p *producer) drainSerial() {
	for {
		p.serialMu.Lock()
		q := p.serialQ
		p.serialQ = nil
		if len(q) == 0 {
			p.draining = false
			p.serialMu.Unlock()
			return
		}
		p.serialMu.Unlock()
		for _, req := range q {
			p.process(req.md, req.data, req.partition, req.f)
			<-p.slots
			p.addPooled(-1)
		}
	}
}

// process validates, selects and serializes one event, queues it on its
// partition, and writes a batch when one is due. f is nil when called
// inline (a queued future is then carved here).
func (p *producer) process(md diaspora.Metadata, data diaspora.DataView, partition int, f *pushFuture) diaspora.Future[diaspora.EventID] {
	t := p.topic
	if err := t.validator.Validate(md, data); err != nil {
		return p.fail(f, err)
	}
	idx, err := t.selector.SelectPartitionFor(md, partition)
	if err == nil && (idx < 0 || idx >= len(p.parts)) {
		err = fmt.Errorf("%w: partition selector chose partition %d of a topic with %d", diaspora.ErrInvalidArgument, idx, len(p.parts))
	}
	if err != nil {
		return p.fail(f, err)
	}
	return p.queue(p.parts[idx], md, data, f)
}

// fail completes f (or, when nil, a new future) with err.
func (p *producer) fail(f *pushFuture, err error) diaspora.Future[diaspora.EventID] {
	err = fmt.Errorf("producer %q of topic %q: %w", p.name, p.topic.name, err)
	if f == nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, err)
	}
	f.complete(0, 0, err)
	return f
}

// queue serializes an event onto pp's queue and writes a batch when one is
// due.
func (p *producer) queue(pp *producerPartition, md diaspora.Metadata, data diaspora.DataView, f *pushFuture) diaspora.Future[diaspora.EventID] {
	fail := func(err error) diaspora.Future[diaspora.EventID] { return p.fail(f, err) }
	pp.mu.Lock()
	meta, err := pp.serializeQueued(md)
	if err != nil {
		pp.mu.Unlock()
		return fail(fmt.Errorf("serialize: %w", err))
	}
	if f == nil {
		f = pp.newFuture()
	}
	f.part.Store(pp)
	pp.pending = append(pp.pending, queuedEvent{meta: meta, data: data, f: f})
	n := len(pp.pending)
	pp.queued.Store(int64(n))
	pp.mu.Unlock()
	// A Wait that began before the partition was known could not write the
	// batch; it made f.ch before looking at f.part again, so one of us sees
	// the other (both under or after f.mu).
	f.mu.Lock()
	waited := f.ch != nil
	f.mu.Unlock()
	switch {
	case p.batch == diaspora.AdaptiveBatchSize:
		// Write now unless a batch is being written; that writer takes this
		// event with the next batch, so batches grow while the ring is busy.
		pp.flush(waited)
	case n >= int(p.batch) || waited:
		pp.flush(true)
	}
	return f
}

// Queued events' metadata and futures are carved from blocks: a push
// allocates once per block, and a kept future keeps its block alive.
const (
	metaBlock   = 64 << 10
	futureBlock = 64
)

// serializeQueued serializes md into the partition's metadata block; pp.mu
// is held. Events still queued keep the bytes of earlier blocks.
func (pp *producerPartition) serializeQueued(md diaspora.Metadata) ([]byte, error) {
	if cap(pp.metaArena)-len(pp.metaArena) < len(md.Bytes()) || len(pp.metaArena) > metaBlock/2 {
		pp.metaArena = make([]byte, 0, max(metaBlock, 2*len(md.Bytes())))
	}
	start := len(pp.metaArena)
	out, err := serializeInto(pp.p.topic.serializer, pp.metaArena, md)
	if err != nil {
		return nil, err
	}
	if len(out) < start {
		return nil, fmt.Errorf("the serializer returned %d bytes, fewer than the %d it was given to append to", len(out), start)
	}
	pp.metaArena = out
	return out[start:len(out):len(out)], nil
}

// newFuture carves a push future from the partition's block; pp.mu is held.
func (pp *producerPartition) newFuture() *pushFuture {
	f := pp.futSlab.get(futureBlock)
	f.prod = pp.p
	return f
}

// writeOne serializes md into the partition's scratch buffer and writes one
// record; flushMu is held.
func (pp *producerPartition) writeOne(md diaspora.Metadata, data diaspora.DataView) (fut diaspora.Future[diaspora.EventID]) {
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			fut = diaspora.ReadyFuture[diaspora.EventID](0, faultError(r, pp.part))
		}
	}()
	p := pp.p
	meta, err := serializeInto(p.topic.serializer, pp.scratch[:0], md)
	if err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: serialize: %w", p.name, p.topic.name, err))
	}
	pp.scratch = meta[:0]
	pp.sizes = append(pp.sizes[:0], ring.RecordSize{Meta: len(meta), Data: data.Size()})
	c := &pp.claim
	if err := pp.part.ring.Claim(c, pp.sizes, p.timeout); err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, pp.claimError(err, pp.sizes[0]))
	}
	pp.part.lease.cover(c.ID(0))
	copy(c.Meta(0), meta)
	copyIntoRing(c.Data(0), data)
	if err := c.Commit(); err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q partition %d: commit: %w", p.name, p.topic.name, pp.index, err))
	}
	return pp.done(c.ID(0))
}

// claimError says which producer and partition a failed claim was for,
// and, for a record of s too large for the ring, which ring_size takes it.
func (pp *producerPartition) claimError(err error, s ring.RecordSize) error {
	err = fmt.Errorf("producer %q of topic %q partition %d: %w", pp.p.name, pp.p.topic.name, pp.index, err)
	if errors.Is(err, ring.ErrTooLarge) {
		err = fmt.Errorf("%w: %w; %s", diaspora.ErrInvalidArgument, err, ringSizeFor(s, pp.p.topic.opts.RingSize))
	}
	return err
}

// ringSizeFor says which ring_size takes an event of s: an event (with its
// 32-byte header) may take up to half of a ring.
func ringSizeFor(s ring.RecordSize, have int) string {
	need := int64(32) + int64(s.Meta) + int64(s.Data)
	size := int64(MinRingSize)
	for size < 2*need {
		size *= 2
	}
	if size > MaxRingSize {
		return fmt.Sprintf("no ring_size takes an event of %d bytes: the largest ring (%s) takes events of up to %s with their 32-byte header; split the event, or Claim and write it in parts",
			need, humanSize(MaxRingSize), humanSize(MaxRingSize/2))
	}
	return fmt.Sprintf("the topic's ring_size is %s, and an event may take up to half of a ring: create the topic with \"ring_size\":%q or more to stream events of %d bytes",
		humanSize(int64(have)), humanSize(size), need)
}

// humanSize renders a power-of-two size as ring_size takes it ("64MiB").
func humanSize(n int64) string {
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.unit)
		}
	}
	return fmt.Sprint(n)
}

// flush writes what is queued. With wait false it returns at once when
// another goroutine is writing: that goroutine checks the queue again
// after it lets go, so no event is left behind.
func (pp *producerPartition) flush(wait bool) {
	for {
		if wait {
			pp.flushMu.Lock()
		} else if !pp.flushMu.TryLock() {
			return
		}
		pp.drain()
		pp.flushMu.Unlock()
		if pp.queued.Load() == 0 {
			return
		}
		// Events queued while we held the lock were left to us by pushers
		// whose TryLock failed: write them, unless a writer took over.
		wait = false
	}
}

// drain writes the stage, then batches until the queue is empty; flushMu
// is held.
func (pp *producerPartition) drain() {
	pp.writeStage()
	for {
		// Swap the queue with the spare one. Only a non-empty queue is
		// taken: taking an empty one would leave pending and the spare on
		// the same array, and the next drain would write while pushers
		// append into the slice it reads.
		pp.mu.Lock()
		q := pp.pending
		if len(q) == 0 {
			pp.mu.Unlock()
			return
		}
		pp.pending = pp.batchQ[:0]
		pp.queued.Store(0)
		pp.mu.Unlock()
		pp.write(q)
		clear(q)
		pp.batchQ = q
	}
}

// write puts queued events into the ring, as few claims as fit.
func (pp *producerPartition) write(q []queuedEvent) {
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			err := faultError(r, pp.part)
			for _, ev := range q {
				if !ev.f.done.Load() {
					ev.f.complete(0, 0, err)
				}
			}
		}
	}()
	r := pp.part.ring
	maxRec := r.MaxRecordSize()
	for rest := q; len(rest) > 0; {
		q := rest
		// Take the longest prefix that fits in one claim.
		n, total := 0, 0
		pp.sizes = pp.sizes[:0]
		for n < len(q) {
			size := ring.RecordSize{Meta: len(q[n].meta), Data: q[n].data.Size()}
			rec := recordSpace(size)
			if n > 0 && total+rec > maxRec {
				break
			}
			pp.sizes = append(pp.sizes, size)
			total += rec
			n++
		}
		batch := q[:n]
		rest = q[n:]
		if err := r.Claim(&pp.claim, pp.sizes, pp.p.timeout); err != nil {
			err = pp.claimError(err, pp.sizes[0])
			for _, ev := range batch {
				ev.f.complete(0, 0, err)
			}
			continue
		}
		c := &pp.claim
		pp.part.lease.cover(c.ID(len(batch) - 1))
		for i, ev := range batch {
			copy(c.Meta(i), ev.meta)
			copyIntoRing(c.Data(i), ev.data)
		}
		end := c.End()
		if err := c.Commit(); err != nil {
			err = fmt.Errorf("producer %q of topic %q partition %d: commit: %w", pp.p.name, pp.p.topic.name, pp.index, err)
			for _, ev := range batch {
				ev.f.complete(0, 0, err)
			}
			continue
		}
		pp.mu.Lock()
		pp.lastEnd = end
		pp.mu.Unlock()
		for i, ev := range batch {
			ev.f.complete(c.ID(i), end, nil)
		}
	}
}

// copyChunk bounds one copy() into the ring. From 1 MiB on, Go's memmove
// switches to non-temporal stores that bypass the cache, so the consumer
// would read the event from DRAM; pieces of 256 KiB stay in the cache.
const copyChunk = 256 << 10

// copyIntoRing copies the segments of src into dst in cache-friendly pieces.
func copyIntoRing(dst []byte, src diaspora.DataView) {
	for _, seg := range src {
		for len(seg) > 0 && len(dst) > 0 {
			n := copy(dst[:min(len(dst), copyChunk)], seg)
			dst, seg = dst[n:], seg[n:]
		}
	}
}

// adaptiveBatchHint sizes the back-pressure bound of adaptive batching.
const adaptiveBatchHint = 1024

// recordSpace is the ring space a record takes: a 32-byte header and the
// payload, aligned to 16 bytes.
func recordSpace(s ring.RecordSize) int { return (32 + s.Meta + s.Data + 15) &^ 15 }

// Flush writes everything queued; its future completes when everything
// pushed before it has completed (under sync: is fsynced in the log).
func (p *producer) Flush() diaspora.Future[struct{}] {
	pr := diaspora.NewPromise[struct{}]()
	go func() { pr.Set(struct{}{}, p.flushAll(-1)) }()
	return pr.Future()
}

func (p *producer) flushAll(timeout time.Duration) (err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, p)
	p.pooledMu.Lock()
	for p.pooled > 0 {
		p.pooledCond.Wait()
	}
	p.pooledMu.Unlock()
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for _, pp := range p.parts {
		pp.flush(true)
		if !p.sync {
			continue
		}
		pp.mu.Lock()
		end := pp.lastEnd
		pp.mu.Unlock()
		if end == 0 {
			continue
		}
		wait := p.timeout
		if !deadline.IsZero() {
			wait = time.Until(deadline)
		}
		if pp.part.closed.Load() {
			return pp.part.errClosed()
		}
		if err := pp.part.waitArchived(end, wait); err != nil {
			return fmt.Errorf("producer %q of topic %q partition %d: waiting for the log: %w", p.name, p.topic.name, pp.index, err)
		}
	}
	return nil
}

// Close flushes, waits for what was pushed, then refuses new pushes.
func (p *producer) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	// Pushes and claims that passed the closed check before it was set
	// finish first (they hold active), then what they queued is written.
	for p.active.Load() > 0 {
		time.Sleep(50 * time.Microsecond)
	}
	err := p.flushAll(-1)
	p.stopLinger()
	// Claims still open: their owner has the claim timeout to commit or
	// abort, then they are aborted (nothing is published) and Close says so.
	done := make(chan struct{})
	go func() { p.claims.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.topic.opts.ClaimTimeout):
		if n := p.abortOpenClaims(); n > 0 {
			err = errors.Join(err, fmt.Errorf("%w: %s: Close aborted %d claim(s) still open after the claim timeout %v; their events were not published",
				diaspora.ErrClosed, p, n, p.topic.opts.ClaimTimeout))
		}
		<-done
	}
	err = errors.Join(err, p.removeProducers())
	p.topic.removeClient(p)
	return err
}

// pushFuture is the future of one push. Waiting on it writes the event's
// batch if it is still queued (a fixed batch size would otherwise hold it),
// and under sync waits for the log.
type pushFuture struct {
	prod *producer
	part atomic.Pointer[producerPartition]

	done atomic.Bool
	mu   sync.Mutex
	ch   chan struct{}
	id   diaspora.EventID
	end  uint64
	err  error
}

func (f *pushFuture) complete(id diaspora.EventID, end uint64, err error) {
	f.mu.Lock()
	f.id, f.end, f.err = id, end, err
	f.done.Store(true)
	if f.ch != nil {
		close(f.ch)
	}
	f.mu.Unlock()
}

func (f *pushFuture) Completed() (done bool) {
	if !f.done.Load() {
		return false
	}
	if f.err != nil || !f.prod.sync {
		return true
	}
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			faultError(r, f.prod)
			done = true // a fault: Wait reports it
		}
	}()
	pp := f.part.Load()
	if pp.part.closed.Load() {
		return true // Wait reports it
	}
	return pp.part.ring.ArchivedPos() >= f.end
}

func (f *pushFuture) Wait(timeout time.Duration) (_ diaspora.EventID, err error) {
	if f.done.Load() && (f.err != nil || !f.prod.sync) {
		return f.id, f.err // the common case: no clock, no ring access
	}
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, f.prod)
	start := time.Now()
	if !f.done.Load() {
		if pp := f.part.Load(); pp != nil {
			pp.flush(true)
		}
	}
	if !f.done.Load() {
		f.mu.Lock()
		if !f.done.Load() && f.ch == nil {
			f.ch = make(chan struct{})
		}
		ch := f.ch
		f.mu.Unlock()
		// The push may have reached its partition queue meanwhile; see
		// process for the other half of this hand-shake.
		if pp := f.part.Load(); pp != nil && !f.done.Load() {
			pp.flush(true)
		}
		if ch != nil {
			if timeout < 0 {
				<-ch
			} else {
				t := time.NewTimer(timeout)
				select {
				case <-ch:
					t.Stop()
				case <-t.C:
					return 0, fmt.Errorf("%w: push of producer %q still pending after %v", diaspora.ErrTimeout, f.prod.name, timeout)
				}
			}
		}
	}
	if f.err != nil || !f.prod.sync {
		return f.id, f.err
	}
	// The wait for the log is bounded by push_timeout too: an archiver that
	// cannot write (a full or read-only disk) must not hang Wait(-1).
	wait, userBound := f.prod.timeout, false
	if timeout >= 0 {
		if rem := max(0, timeout-time.Since(start)); rem < wait {
			wait, userBound = rem, true
		}
	}
	pp := f.part.Load()
	if pp.part.closed.Load() {
		return 0, pp.part.errClosed()
	}
	if err := pp.part.waitArchived(f.end, wait); err != nil {
		if !errors.Is(err, ring.ErrTimeout) {
			return 0, fmt.Errorf("event %d of topic %q partition %d is in the ring but not in the log: %w", f.id, f.prod.topic.name, pp.index, err)
		}
		if userBound {
			return 0, fmt.Errorf("%w: event %d of topic %q partition %d not yet fsynced in the log after %v", diaspora.ErrTimeout, f.id, f.prod.topic.name, pp.index, timeout)
		}
		return 0, fmt.Errorf("event %d of topic %q partition %d is in the ring but was not fsynced in the log within push_timeout %v: %s",
			f.id, f.prod.topic.name, pp.index, f.prod.timeout, pp.part.archiverState())
	}
	return f.id, nil
}

// Claim reserves space for one event in the ring; the caller writes the data
// in place and commits (zero-copy produce).
func (p *producer) Claim(md diaspora.Metadata, size int, partition int) (_ diaspora.Claim, err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, p)
	p.active.Add(1)
	defer p.active.Add(-1)
	if p.closed.Load() {
		return nil, fmt.Errorf("%w: producer %q of topic %q", diaspora.ErrClosed, p.name, p.topic.name)
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: claim size %d is negative", diaspora.ErrInvalidArgument, size)
	}
	t := p.topic
	idx, err := t.selector.SelectPartitionFor(md, partition)
	if err == nil && (idx < 0 || idx >= len(p.parts)) {
		err = fmt.Errorf("%w: partition selector chose partition %d of a topic with %d", diaspora.ErrInvalidArgument, idx, len(p.parts))
	}
	if err != nil {
		return nil, fmt.Errorf("producer %q of topic %q: %w", p.name, t.name, err)
	}
	pp := p.parts[idx]
	c := p.newClaim()
	c.pp, c.md = pp, md
	meta, err := serializeInto(t.serializer, c.metaBuf[:0], md)
	if err != nil {
		return nil, fmt.Errorf("producer %q of topic %q: serialize: %w", p.name, t.name, err)
	}
	pp.part.views.Store(true) // Bytes() may be kept past Close
	if p.ordering == diaspora.Strict {
		// Pushes still on the pool's threads were made before the claim:
		// they are staged first, or the claim's event would overtake them.
		p.pooledMu.Lock()
		for p.pooled > 0 {
			p.pooledCond.Wait()
		}
		p.pooledMu.Unlock()
	}
	// What was pushed before the claim goes first. Always through the
	// writer lock: a writer that took the queue (queued reads 0 then) may
	// not have claimed its space yet.
	pp.flush(true)
	c.size[0] = ring.RecordSize{Meta: len(meta), Data: size}
	if err := pp.part.ring.Claim(&c.c, c.size[:], p.timeout); err != nil {
		return nil, pp.claimError(err, c.size[0])
	}
	pp.part.lease.cover(c.c.ID(0))
	copy(c.c.Meta(0), meta)
	p.openClaim(c)
	return c, nil
}

type claim struct {
	p    *producer
	pp   *producerPartition
	md   diaspora.Metadata
	c    ring.Claim
	used atomic.Bool

	size       [1]ring.RecordSize
	metaBuf    [64]byte // small metadata is serialized here, then copied into the ring
	prev, next *claim   // the producer's open claims, under openMu
	done       doneFuture
	view       [1][]byte
}

// claimBlock claims are carved from blocks of this many: a claim allocates
// once per block, and one kept by its user keeps its block alive.
const claimBlock = 32

// newClaim carves a claim from the producer's block.
func (p *producer) newClaim() *claim {
	p.openMu.Lock()
	defer p.openMu.Unlock()
	c := p.claimSlab.get(claimBlock)
	c.p = p
	return c
}

func (c *claim) Bytes() []byte { return c.c.Data(0) }

func (c *claim) Commit() (f diaspora.Future[diaspora.EventID]) {
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			f = diaspora.ReadyFuture[diaspora.EventID](0, faultError(r, c.pp.part))
		}
	}()
	if c.used.Swap(true) {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("%w: claim already committed or aborted", diaspora.ErrInvalidArgument))
	}
	defer c.p.closeClaim(c)
	c.view[0] = c.c.Data(0) // a DataView of the claim's own, so the call does not allocate one
	if err := c.p.topic.validator.Validate(c.md, c.view[:]); err != nil {
		c.c.Abort()
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: %w", c.p.name, c.p.topic.name, err))
	}
	id, end := c.c.ID(0), c.c.End()
	if err := c.c.Commit(); err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q partition %d: commit: %w", c.p.name, c.p.topic.name, c.pp.index, err))
	}
	if !c.p.sync {
		c.done.id = id
		return &c.done
	}
	c.pp.mu.Lock()
	c.pp.lastEnd = max(c.pp.lastEnd, end)
	c.pp.mu.Unlock()
	pf := &pushFuture{prod: c.p}
	pf.part.Store(c.pp)
	pf.complete(id, end, nil)
	return pf
}

func (c *claim) Abort() (err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, c.pp.part)
	if c.used.Swap(true) {
		return fmt.Errorf("%w: claim already committed or aborted", diaspora.ErrInvalidArgument)
	}
	defer c.p.closeClaim(c)
	return c.c.Abort()
}

// openClaim and closeClaim track the claims Close must wait for.
func (p *producer) openClaim(c *claim) {
	p.claims.Add(1)
	p.openMu.Lock()
	c.prev, c.next = nil, p.open
	if p.open != nil {
		p.open.prev = c
	}
	p.open = c
	p.openMu.Unlock()
}

func (p *producer) closeClaim(c *claim) {
	p.openMu.Lock()
	if c.prev != nil {
		c.prev.next = c.next
	} else if p.open == c {
		p.open = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	p.openMu.Unlock()
	p.claims.Done()
}

// abortOpenClaims aborts the claims still open at Close and says how many
// were dropped.
func (p *producer) abortOpenClaims() int {
	p.openMu.Lock()
	var open []*claim
	for c := p.open; c != nil; c = c.next {
		open = append(open, c)
	}
	p.openMu.Unlock()
	for _, c := range open {
		c.Abort() // one that readers already gave up is dropped all the same
	}
	return len(open)
}
