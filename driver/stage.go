package driver

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
)

// Inline pushes (a producer without pool threads, durability none or
// async) are staged: the pushing goroutine appends the event to its
// partition's stage and the stage goes into the ring as one claim and one
// commit when it is full, when a future of it is waited on, on Flush and
// Close, or once its first event is linger old. A push then costs no
// atomic operation of the ring and no allocation of its own; the ring's
// claim, commit and wake-up are paid once a batch.
//
// With AdaptiveBatchSize a push that finds the stage empty and the
// partition idle (nothing pushed for directGap) is written at once, as
// before: a producer that pushes an event now and then pays no latency for
// batching, one that streams gets batches as large as the stream allows.
const (
	// directGap: a push this long after the partition's previous one
	// starts no batch (it is written at once).
	directGap = 2 * time.Microsecond
	// linger bounds how long a staged event waits for its batch to fill;
	// pushes check it every lingerCheck events, and the producer's linger
	// goroutine flushes a stage nobody pushes to any more (its sleeps last
	// longer than linger: a timer here fires after 50 µs to 1 ms).
	linger      = 5 * time.Microsecond
	lingerCheck = 8
	// An adaptive stage is written at stageEvents events or stageBytes
	// bytes of records; events of stageDirect bytes or more are written
	// at once (batching them saves nothing next to their copy).
	stageEvents = 256
	stageBytes  = 256 << 10
	stageDirect = 16 << 10
	// stagedBlock futures of staged pushes are allocated at a time.
	stagedBlock = 256
)

// clockBase makes monotonic nanoseconds from time.Since.
var clockBase = time.Now()

func monoNow() int64 { return int64(time.Since(clockBase)) }

// stagedFutures holds the futures of stagedBlock consecutive staged events
// of a partition: a push allocates nothing of its own, and a future the
// user keeps keeps its block alive (about 4 KiB).
type stagedFutures struct {
	pp   *producerPartition
	seq0 uint64 // the stage sequence number of slots[0]
	// errs is made at the first failure; atomic, since a later batch of
	// the block may make it while a future of an earlier one reads it.
	errs atomic.Pointer[[stagedBlock]error]
	futs [stagedBlock]stagedFuture
}

// stagedFuture is the future of a staged push. The writer of its batch sets
// id (and its block's errs), then publishes them by moving the partition's
// doneSeq past it: one atomic store per batch, not one per event.
type stagedFuture struct {
	id diaspora.EventID
	i  uint32 // index in its block's futs
}

// block returns the stagedFutures f lies in: f is futs[f.i] of it.
func (f *stagedFuture) block() *stagedFutures {
	return (*stagedFutures)(unsafe.Add(unsafe.Pointer(f), -int(unsafe.Offsetof(stagedFutures{}.futs)+uintptr(f.i)*unsafe.Sizeof(stagedFuture{}))))
}

func (f *stagedFuture) done(b *stagedFutures) bool { return b.pp.doneSeq.Load() > b.seq0+uint64(f.i) }

func (f *stagedFuture) Completed() bool {
	b := f.block()
	if f.done(b) {
		return true
	}
	// A poller must see progress: write the stage unless a writer is at it.
	b.pp.flush(false)
	return f.done(b)
}

// Wait writes the stage holding the event if it is still staged. Waiting
// for the writer lock means that whoever held it has written the event:
// writers take the whole stage and complete it before they let go.
func (f *stagedFuture) Wait(time.Duration) (diaspora.EventID, error) {
	b := f.block()
	if !f.done(b) {
		b.pp.flush(true)
	}
	if !f.done(b) {
		return 0, fmt.Errorf("producer %q of topic %q partition %d: internal error: staged event %d not written by a flush",
			b.pp.p.name, b.pp.p.topic.name, b.pp.index, b.seq0+uint64(f.i))
	}
	if errs := b.errs.Load(); errs != nil && errs[f.i] != nil {
		return 0, errs[f.i]
	}
	return f.id, nil
}

// newStagedFuture returns the future of the event numbered pp.stageSeq;
// flushMu is held.
func (pp *producerPartition) newStagedFuture() *stagedFuture {
	b := pp.futBlock
	if b == nil || pp.futNext == stagedBlock {
		b = &stagedFutures{pp: pp, seq0: pp.stageSeq}
		pp.futBlock, pp.futNext = b, 0
		pp.stageBlocks = append(pp.stageBlocks, b)
	}
	f := &b.futs[pp.futNext]
	f.i = uint32(pp.futNext)
	pp.futNext++
	return f
}

// stagedFutureOf returns the future of the staged event numbered seq;
// flushMu is held.
func (pp *producerPartition) stagedFutureOf(seq uint64) (*stagedFutures, *stagedFuture) {
	b := pp.stageBlocks[(seq-pp.stageBlocks[0].seq0)/stagedBlock]
	return b, &b.futs[seq-b.seq0]
}

// pushInline is Push on the caller's goroutine: validate, select, then
// stage the event, or queue it when another goroutine is writing to the
// partition. Staging counts in no active counter: pushStaged checks closed
// under the writer lock, which Close takes (to flush) after it set closed.
func (p *producer) pushInline(md diaspora.Metadata, data diaspora.DataView, partition int) diaspora.Future[diaspora.EventID] {
	t := p.topic
	if err := t.validator.Validate(md, data); err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: %w", p.name, t.name, err))
	}
	idx, err := t.selector.SelectPartitionFor(md, partition)
	if err == nil && (idx < 0 || idx >= len(p.parts)) {
		err = fmt.Errorf("%w: partition selector chose partition %d of a topic with %d", diaspora.ErrInvalidArgument, idx, len(p.parts))
	}
	if err != nil {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: %w", p.name, t.name, err))
	}
	pp := p.parts[idx]
	if fut, ok := pp.pushStaged(md, data, p.batch != diaspora.AdaptiveBatchSize); ok {
		return fut
	}
	// Another goroutine is writing: queue the event for it (or for us, if
	// it is done by then), counted for Close like any queued push.
	p.active.Add(1)
	defer p.active.Add(-1)
	if p.closed.Load() {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("%w: producer %q of topic %q", diaspora.ErrClosed, p.name, t.name))
	}
	return p.queue(pp, md, data, nil)
}

// pushStaged stages (or writes) one inline push; ok is false when another
// goroutine holds the partition's writer lock, and the caller queues the
// event instead. fixed is true for a producer with a BatchSize: its stage
// is written at batch events, and never for time alone.
func (pp *producerPartition) pushStaged(md diaspora.Metadata, data diaspora.DataView, fixed bool) (diaspora.Future[diaspora.EventID], bool) {
	if !pp.flushMu.TryLock() {
		return nil, false
	}
	if pp.p.closed.Load() {
		pp.flushMu.Unlock()
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("%w: producer %q of topic %q", diaspora.ErrClosed, pp.p.name, pp.p.topic.name)), true
	}
	if pp.queued.Load() > 0 {
		// Events queued by other goroutines go first: one of them may be
		// an earlier push of this goroutine.
		pp.drain()
	}
	size := data.Size()
	maxRec := pp.part.ring.MaxRecordSize()
	if !fixed && pp.stage.Len() == 0 {
		now := monoNow()
		idle := now-pp.lastPush > int64(directGap)
		pp.lastPush = now
		if idle || size >= stageDirect {
			fut := pp.writeOne(md, data)
			pp.unlockWriter()
			return fut, true
		}
		pp.stageStart = now
	} else if size >= stageDirect || size > maxRec/2 {
		pp.writeStage()
		fut := pp.writeOne(md, data)
		pp.unlockWriter()
		return fut, true
	}
	given := pp.stage.Begin()
	m0 := len(given)
	buf, err := serializeInto(pp.p.topic.serializer, given, md)
	if err == nil && (len(buf) < m0 || (unsafe.SliceData(buf) != unsafe.SliceData(given) && !bytes.Equal(buf[:m0], given))) {
		// Not appended to what it was given: the stage's other events
		// would be lost. (Compared only when the buffer moved, which
		// growth by append does now and then.)
		err = fmt.Errorf("the serializer returned %d bytes that do not begin with the %d it was given to append to", len(buf), m0)
	}
	if err != nil {
		pp.stage.Cancel()
		pp.unlockWriter()
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: serialize: %w", pp.p.name, pp.p.topic.name, err)), true
	}
	metaLen := len(buf) - m0
	for _, seg := range data {
		buf = append(buf, seg...)
	}
	if err := pp.stage.End(buf, metaLen); err != nil {
		pp.unlockWriter()
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: %w", pp.p.name, pp.p.topic.name, err)), true
	}
	if recordSpace(ring.RecordSize{Meta: metaLen, Data: size}) > maxRec/2 {
		// Large metadata: a batch of it may not fit one claim. Write
		// what was staged before it, then the event by itself (which
		// says which ring_size takes it, when none here does).
		pp.stage.DropLast()
		pp.writeStage()
		fut := pp.writeOne(md, data)
		pp.unlockWriter()
		return fut, true
	}
	f := pp.newStagedFuture()
	pp.stageSeq++
	n := pp.stage.Len()
	var full bool
	if fixed {
		full = n >= int(pp.p.batch) || pp.stage.Bytes() >= maxRec/2
	} else {
		full = n >= stageEvents || pp.stage.Bytes() >= min(stageBytes, maxRec/2)
		if !full && (n < lingerCheck || n%lingerCheck == 0) {
			// A stream that paused (this push came directGap after the
			// last) writes now: its events would otherwise wait for pushes
			// that come slowly. Past the first few events of a batch the
			// clock is read every lingerCheck pushes only.
			now := monoNow()
			paused := now-pp.lastPush > int64(directGap)
			pp.lastPush = now
			full = paused || now-pp.stageStart >= int64(linger)
		}
	}
	switch {
	case full:
		pp.writeStage()
	case n == 1 && fixed:
		pp.stagedAt.Store(1) // open, and never linger old: see lingerPass
	case n == 1:
		pp.stagedAt.Store(pp.stageStart)
		pp.p.wakeLinger()
	}
	pp.unlockWriter()
	return f, true
}

// serializeInto appends md, serialized, to buf; a serializer that panics
// is an error: the callers hold a lock of the partition (the writer lock,
// the queue lock), which a panic must not leave taken.
func serializeInto(s diaspora.Serializer, buf []byte, md diaspora.Metadata) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("the serializer panicked: %v", r)
		}
	}()
	return s.Serialize(buf, md)
}

// unlockWriter lets go of the writer lock and writes what other goroutines
// queued meanwhile (they only queue when they find the lock taken).
func (pp *producerPartition) unlockWriter() {
	pp.flushMu.Unlock()
	if pp.queued.Load() > 0 {
		pp.flush(false)
	}
}

// writeStage writes the staged events, with one claim, one copy and one
// commit (ring.WriteBatch), and completes their futures; flushMu is held.
func (pp *producerPartition) writeStage() {
	n := pp.stage.Len()
	if n == 0 {
		return
	}
	seq0 := pp.stageSeq - uint64(n) // the number of the first staged event
	settled := false
	fail := func(err error) {
		for k := range n {
			b, f := pp.stagedFutureOf(seq0 + uint64(k))
			errs := b.errs.Load()
			if errs == nil {
				errs = new([stagedBlock]error)
				b.errs.Store(errs)
			}
			errs[f.i] = err
		}
	}
	defer func() {
		pp.stage.Reset()
		// Blocks of written events are the futures' business now.
		cur := pp.futBlock
		clear(pp.stageBlocks)
		pp.stageBlocks = pp.stageBlocks[:0]
		if cur != nil && pp.futNext < stagedBlock {
			pp.stageBlocks = append(pp.stageBlocks, cur)
		}
		pp.stagedAt.Store(0)
		pp.doneSeq.Store(pp.stageSeq)
	}()
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil && !settled {
			fail(faultError(r, pp.part))
		}
	}()
	if pp.cover == nil {
		pp.cover = pp.part.lease.cover // a method value, made once
	}
	id0, _, err := pp.part.ring.WriteBatch(&pp.stage, pp.p.timeout, pp.cover)
	if err != nil {
		settled = true
		if errors.Is(err, ring.ErrAbandoned) {
			err = fmt.Errorf("producer %q of topic %q partition %d: commit: %w", pp.p.name, pp.p.topic.name, pp.index, err)
		} else {
			err = pp.claimError(err, ring.RecordSize{})
		}
		fail(err)
		return
	}
	for k := range n {
		_, f := pp.stagedFutureOf(seq0 + uint64(k))
		f.id = id0 + uint64(k)
	}
	settled = true
}

// wakeLinger starts the linger goroutine's watch if it is parked. Dekker
// with lingerLoop: a stage is published (stagedAt) before parked is read;
// the goroutine sets parked before it looks at the stages a last time.
func (p *producer) wakeLinger() {
	if p.lingerParked.Load() && p.lingerParked.CompareAndSwap(true, false) {
		select {
		case p.lingerWake <- struct{}{}:
		default:
		}
	}
}

// lingerLoop writes stages whose first event is linger old and that no push
// comes to write: the last events of a burst whose futures nobody waits on.
func (p *producer) lingerLoop() {
	defer close(p.lingerDone)
	t := time.NewTimer(linger)
	t.Stop()
	for {
		select {
		case <-p.lingerStop:
			return
		case <-p.lingerWake:
		}
		for {
			t.Reset(linger)
			select {
			case <-p.lingerStop:
				return
			case <-t.C:
			}
			if p.lingerPass() {
				continue
			}
			p.lingerParked.Store(true)
			if !p.lingerPass() || !p.lingerParked.CompareAndSwap(true, false) {
				break // parked (or a push is waking us: its wake ends the wait)
			}
		}
	}
}

// lingerPass writes the stages that are linger old; it reports whether any
// stage was open.
func (p *producer) lingerPass() bool {
	if p.batch != diaspora.AdaptiveBatchSize {
		return false // a fixed batch size waits for its batch, or a flush
	}
	open := false
	now := monoNow()
	for _, pp := range p.parts {
		at := pp.stagedAt.Load()
		if at == 0 {
			continue
		}
		open = true
		if now-at >= int64(linger) {
			pp.flush(false)
		}
	}
	return open
}

// lingerState is the producer's part of staging: its linger goroutine.
type lingerState struct {
	lingerParked atomic.Bool
	lingerWake   chan struct{}
	lingerStop   chan struct{}
	lingerDone   chan struct{}
}

// startLinger starts the producer's linger goroutine, parked.
func (p *producer) startLinger() {
	p.lingerWake = make(chan struct{}, 1)
	p.lingerStop = make(chan struct{})
	p.lingerDone = make(chan struct{})
	p.lingerParked.Store(true)
	go p.lingerLoop()
}

// stopLinger ends the linger goroutine; the stages were flushed.
func (p *producer) stopLinger() {
	if p.lingerStop != nil {
		close(p.lingerStop)
		<-p.lingerDone
	}
}
