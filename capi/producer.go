package main

/*
#include "internal.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
)

// cProducer is a producer, the Go memory its pushes may still read, and
// the failures of the pushes made without a future handle, which the next
// flush reports.
type cProducer struct {
	p diaspora.Producer
	d *cDriver // its driver

	mu         sync.Mutex
	inFlight   []*pushCall // in the order the calls ended; inFlight[head:] are pending
	head       int
	sinceReap  int // pushes ended since the last reap
	spare      []*pushCall
	spareBytes int
	failed     int
	firstErr   error

	// The call that one-push calls add to, so that they too allocate
	// nothing; a push that finds it taken by another thread is a call of
	// its own.
	singleMu sync.Mutex
	single   *pushCall

	// The drain goroutine of the push queue (pushqueue.c), started by the
	// first push queued.
	queueOnce                       sync.Once
	queueWake, queueStop, queueDone chan struct{}
}

// singleCall is how many pushes of dshm_producer_push share a call; one
// with more metadata or segments than these makes a call of its own.
const (
	singleCall     = 256
	singleMeta     = 64 << 10
	singleSegments = 64
)

// pushCall is what one push call gave the producer in Go memory: the
// metadata and segment views of its pushes, which the producer may read
// until each push completes, and the pushes' futures. A call is recycled
// once its pushes all completed, so a steady stream of pushes allocates
// nothing: at millions of small events a second, what each call allocated
// paced Go's collector, whose workers then took CPU from the consumer's
// core (C producer → Go consumer went from 0.72× a Go producer's rate to
// 0.8–0.9× without it).
type pushCall struct {
	md        []byte
	views     [][]byte
	futs      []diaspora.Future[diaspora.EventID]
	untracked []bool // per push: no handle, so its failure is the next flush's to report
	settled   int    // futs[:settled] completed, their failures counted
}

// reapEvery is how many pushes end between two looks at the pending
// calls. A look is not free: asking a staged push whether it completed
// writes its partition's stage (a poller must see progress), so looking at
// every call would cut the producer's batches to the size of the calls.
const reapEvery = 4096

// spareBudget is the memory the spare calls may hold: a burst of large
// calls is not held on to.
const spareBudget = 8 << 20

func (c *pushCall) bytes() int {
	return cap(c.md) + cap(c.views)*int(unsafe.Sizeof([]byte(nil))) + cap(c.futs)*int(unsafe.Sizeof(c.futs[0])) + cap(c.untracked)
}

// newCall returns a cleared call with room for n pushes of mdBytes of
// metadata and nseg segments, recycling the calls that completed.
func (p *cProducer) newCall(n, mdBytes, nseg int) *pushCall {
	p.mu.Lock()
	if len(p.spare) == 0 && p.sinceReap >= reapEvery {
		p.sinceReap = 0
		p.reapLocked(false)
	}
	var c *pushCall
	if k := len(p.spare); k > 0 {
		c = p.spare[k-1]
		p.spare[k-1] = nil
		p.spare = p.spare[:k-1]
		p.spareBytes -= c.bytes()
	}
	p.mu.Unlock()
	if c == nil {
		c = new(pushCall)
	}
	if cap(c.md) < mdBytes {
		c.md = make([]byte, 0, mdBytes)
	}
	if cap(c.views) < nseg {
		c.views = make([][]byte, 0, nseg)
	}
	if cap(c.futs) < n {
		c.futs = make([]diaspora.Future[diaspora.EventID], 0, n)
		c.untracked = make([]bool, 0, n)
	}
	c.settled = 0
	return c
}

// ended queues a call whose pushes were made (all or some of them).
func (p *cProducer) ended(c *pushCall) {
	p.mu.Lock()
	p.inFlight = append(p.inFlight, c)
	p.sinceReap += len(c.futs)
	p.mu.Unlock()
}

// reapLocked recycles the calls whose pushes all completed, oldest first,
// counting the failures of untracked pushes. Before a flush returns
// (flushed) every call is looked at; otherwise a call still pending stops
// the reap, and those after it wait for the next.
func (p *cProducer) reapLocked(flushed bool) {
	for pending := len(p.inFlight) - p.head; pending > 0; pending-- {
		c := p.inFlight[p.head]
		done := p.settleLocked(c)
		if !done && !flushed {
			break
		}
		p.inFlight[p.head] = nil
		p.head++
		if done {
			p.recycleLocked(c)
		} else {
			// Made since the flush began (by another thread): the next
			// flush reports it.
			p.inFlight = append(p.inFlight, c)
		}
	}
	if p.head == len(p.inFlight) {
		p.inFlight, p.head = p.inFlight[:0], 0
	} else if p.head > 1024 && p.head > len(p.inFlight)/2 {
		n := copy(p.inFlight, p.inFlight[p.head:])
		clear(p.inFlight[n:])
		p.inFlight, p.head = p.inFlight[:n], 0
	}
}

// settleLocked moves c.settled past the futures that completed, keeping
// the untracked pushes' failures, and reports whether all did.
func (p *cProducer) settleLocked(c *pushCall) bool {
	for ; c.settled < len(c.futs); c.settled++ {
		f := c.futs[c.settled]
		if !f.Completed() {
			return false
		}
		if !c.untracked[c.settled] {
			continue
		}
		if _, err := f.Wait(0); err != nil {
			p.failed++
			if p.firstErr == nil {
				p.firstErr = err
			}
		}
	}
	return true
}

func (p *cProducer) recycleLocked(c *pushCall) {
	clear(c.views) // past len they are zero: append writes there first
	clear(c.futs)
	c.md, c.views, c.futs, c.untracked = c.md[:0], c.views[:0], c.futs[:0], c.untracked[:0]
	if b := c.bytes(); p.spareBytes+b <= spareBudget {
		p.spare = append(p.spare, c)
		p.spareBytes += b
	}
}

// callName names the call in an error: a push of dshm_producer_push_many
// by its index (the name is made only then).
type callName int

func (i callName) String() string {
	if i < 0 {
		return "dshm_producer_push"
	}
	return fmt.Sprintf("dshm_producer_push_many: push %d", int(i))
}

// push makes one push of call c, its metadata and segment views copied
// into c; with copyData its data too (the push queue's memory is reused
// once the call returns).
func (p *cProducer) push(c *pushCall, q *C.dshm_push, what callName, untracked, copyData bool) (_ diaspora.Future[diaspora.EventID], err error) {
	mdAt, viewsAt := len(c.md), len(c.views)
	defer func() {
		if err != nil { // what it appended is no push's
			clear(c.views[viewsAt:])
			c.md, c.views = c.md[:mdAt], c.views[:viewsAt]
		}
	}()
	var m diaspora.Metadata
	if q.metadata != nil || q.metadata_size != 0 {
		if q.metadata == nil {
			return nil, invalid("%s: metadata is NULL with size %d", what, uint64(q.metadata_size))
		}
		src := unsafe.Slice((*byte)(unsafe.Pointer(q.metadata)), int(q.metadata_size))
		if string(src) != "{}" { // the zero Metadata is {}: nothing to copy or scan
			start := len(c.md)
			c.md = append(c.md, src...)
			if m, err = diaspora.MetadataFromBytes(c.md[start:len(c.md):len(c.md)]); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	var data diaspora.DataView
	if q.num_segments > 0 {
		if q.segments == nil {
			return nil, invalid("%s: segments is NULL with %d segments", what, uint64(q.num_segments))
		}
		start := len(c.views)
		for k, sg := range unsafe.Slice(q.segments, int(q.num_segments)) {
			if sg.size == 0 {
				continue
			}
			if sg.data == nil || uint64(sg.size) > 1<<40 {
				return nil, invalid("%s: segment %d is NULL or of %d bytes", what, k, uint64(sg.size))
			}
			view := unsafe.Slice((*byte)(sg.data), int(sg.size))
			if copyData {
				at := len(c.md)
				c.md = append(c.md, view...)
				view = c.md[at:len(c.md):len(c.md)]
			}
			c.views = append(c.views, view)
		}
		data = c.views[start:len(c.views):len(c.views)]
	}
	var f diaspora.Future[diaspora.EventID]
	switch {
	case q.partition == C.DSHM_ANY_PARTITION:
		f = p.p.Push(m, data)
	case q.partition < 0 || q.partition > 1<<31:
		return nil, invalid("%s: partition %d", what, int64(q.partition))
	default:
		f = p.p.PushTo(int(q.partition), m, data)
	}
	c.futs = append(c.futs, f)
	c.untracked = append(c.untracked, untracked)
	return f, nil
}

// pushAll makes the pushes of one call, in order, stopping at the first
// bad argument; fs (nil for untracked pushes) gets their future handles.
func (p *cProducer) pushAll(ps []C.dshm_push, fs []C.dshm_future, pushed *C.size_t, single bool) error {
	// Checked before anything is allocated: a call declaring more would
	// take the process down with it.
	name := func(i int) callName {
		if single {
			return -1
		}
		return callName(i)
	}
	total, nseg := 0, 0
	for i := range ps {
		what := name(i)
		if uint64(ps[i].metadata_size) > 1<<31-1 || uint64(ps[i].num_segments) > 1<<20 {
			return invalid("%s: metadata of %d bytes, %d segments (at most 2^31-1 and 2^20)", what,
				uint64(ps[i].metadata_size), uint64(ps[i].num_segments))
		}
		total += int(ps[i].metadata_size)
		nseg += int(ps[i].num_segments)
		if total > 1<<31-1 || nseg > 1<<24 {
			return invalid("dshm_producer_push_many: pushes 0..%d declare %d bytes of metadata and %d segments (at most 2^31-1 and 2^24 in one call)", i, total, nseg)
		}
	}
	c := p.newCall(len(ps), total, nseg)
	defer p.ended(c)
	for i := range ps {
		f, err := p.push(c, &ps[i], name(i), fs == nil, false)
		if err != nil {
			return err
		}
		if fs != nil {
			fs[i] = C.dshm_future(newHandle(&cFuture{id: f}))
		}
		if pushed != nil {
			*pushed = C.size_t(i + 1)
		}
	}
	return nil
}

// unnamed numbers the producers opened without a name.
var unnamed atomic.Uint64

type producerArgs struct {
	commonArgs
	Ordering string `json:"ordering"`
}

//export dshmgo_producer_open
func dshmgo_producer_open(h C.dshm_topic, name, argsJSON *C.char, out *C.dshm_producer) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_producer_open: out is NULL"))
	}
	*out = 0
	n := ""
	if name != nil {
		n = C.GoString(name)
	}
	if n == "" {
		n = fmt.Sprintf("c-%d-%d", os.Getpid(), unnamed.Add(1))
	}
	var a producerArgs
	if err := decodeArgs(argsJSON, &a, "dshm_producer_open"); err != nil {
		return fail(err)
	}
	args, err := a.args("dshm_producer_open")
	if err != nil {
		return fail(err)
	}
	switch a.Ordering {
	case "", "strict":
	case "loose":
		args = append(args, diaspora.Loose)
	default:
		return fail(invalid("dshm_producer_open: ordering %q: want \"strict\" or \"loose\"", a.Ordering))
	}
	p, err := t.t.Producer(n, args...)
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_producer(newHandle(&cProducer{p: p, d: t.d}))
	return C.DSHM_OK
}

// metadataArg copies metadata bytes out of C memory and checks them.
func metadataArg(md *C.char, size C.size_t, what string) (diaspora.Metadata, error) {
	if md == nil {
		if size == 0 {
			return diaspora.Metadata{}, nil
		}
		return diaspora.Metadata{}, invalid("%s: metadata is NULL with size %d", what, uint64(size))
	}
	if uint64(size) > 1<<31-1 {
		return diaspora.Metadata{}, invalid("%s: metadata of %d bytes (at most 2^31-1)", what, uint64(size))
	}
	if size == 2 && unsafe.String((*byte)(unsafe.Pointer(md)), 2) == "{}" {
		return diaspora.Metadata{}, nil // the zero Metadata is {}
	}
	m, err := diaspora.MetadataFromBytes(C.GoBytes(unsafe.Pointer(md), C.int(size)))
	if err != nil {
		return m, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

//export dshmgo_producer_push
func dshmgo_producer_push(h C.dshm_producer, md *C.char, mdSize C.size_t, segs *C.dshm_segment, nsegs C.size_t,
	partition C.int64_t, out *C.dshm_future) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	var fs []C.dshm_future
	if out != nil {
		*out = 0
		fs = unsafe.Slice(out, 1)
	}
	q := [1]C.dshm_push{{metadata: md, metadata_size: mdSize, segments: segs, num_segments: nsegs, partition: partition}}
	// Large pushes, and a push that finds another thread at the shared
	// call, make a call of their own.
	if uint64(mdSize) > singleMeta || uint64(nsegs) > singleSegments || !p.singleMu.TryLock() {
		return failOr(p.pushAll(q[:], fs, nil, true))
	}
	defer p.singleMu.Unlock()
	c := p.single
	if c != nil && len(c.futs) == singleCall {
		p.ended(c)
		c = nil
	}
	if c == nil {
		c = p.newCall(singleCall, 0, singleCall)
		p.single = c
	}
	f, err := p.push(c, &q[0], -1, out == nil, false)
	if err != nil {
		return fail(err)
	}
	if out != nil {
		*out = C.dshm_future(newHandle(&cFuture{id: f}))
	}
	return C.DSHM_OK
}

// endSingle queues the call that one-push calls were adding to, for a
// flush to see its pushes. With wait false it leaves the call to the next
// flush when another thread is pushing to it (which may be waiting for
// room in the ring longer than the flush may take).
func (p *cProducer) endSingle(wait bool) {
	if !wait {
		if !p.singleMu.TryLock() {
			return
		}
	} else {
		p.singleMu.Lock()
	}
	if p.single != nil {
		p.ended(p.single)
		p.single = nil
	}
	p.singleMu.Unlock()
}

// dshmgo_producer_push_queued pushes what the push queue (pushqueue.c)
// held, untracked: their metadata and data are copied, and their failures,
// also of an argument (which the queue checked as far as it could), are
// the next flush's to report.
//
//export dshmgo_producer_push_queued
func dshmgo_producer_push_queued(h C.dshm_producer, pushes *C.dshm_push, n C.size_t, tail C.int) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	ps := unsafe.Slice(pushes, int(n))
	total := 0
	for i := range ps {
		total += int(ps[i].metadata_size)
		for _, sg := range unsafe.Slice(ps[i].segments, int(ps[i].num_segments)) {
			total += int(sg.size)
		}
	}
	c := p.newCall(len(ps), total, len(ps))
	defer p.ended(c)
	for i := range ps {
		if _, err := p.push(c, &ps[i], -1, true, true); err != nil {
			p.mu.Lock()
			if p.failed++; p.firstErr == nil {
				p.firstErr = err
			}
			p.mu.Unlock()
		}
	}
	if tail != 0 {
		// The end of a burst: nobody pushes to write the stage, which
		// would wait for the producer's linger goroutine as well.
		// Measured with GOMAXPROCS=4 (where goroutines get a P: see
		// README), the last event of a burst of 10 arrived 1.17 ms late
		// at the median without this, 0.2 ms with it.
		p.p.Flush()
	}
	return C.DSHM_OK
}

// dshmgo_producer_queue_wake starts the producer's drain goroutine's watch
// of its push queue (starting the goroutine the first time).
//
//export dshmgo_producer_queue_wake
func dshmgo_producer_queue_wake(h C.dshm_producer) {
	defer func() { recover() }() // nothing to report: the queue drains on the next call
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return
	}
	p.queueOnce.Do(func() {
		p.queueWake, p.queueStop, p.queueDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go p.drainQueue(h)
	})
	if p.queueWake != nil {
		select {
		case p.queueWake <- struct{}{}:
		default:
		}
	}
}

// queueAcceptsJSON says whether the push queue takes metadata b as JSON
// (the rest goes to Go, which judges it): for the tests, which hold it to
// Go's judgement.
func queueAcceptsJSON(b []byte) bool {
	if len(b) == 0 {
		return C.dshm__json_ok(nil, 0) != 0
	}
	return C.dshm__json_ok((*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b))) != 0
}

// queueTick is how often the drain goroutine looks at a push queue that
// holds pushes (its timer fires after 50 µs to 1 ms).
const queueTick = 50 * time.Microsecond

// drainQueue writes what the producer's push queue holds once its first
// push is old and no push came to write it: the tail of a burst of
// untracked pushes, whose futures nobody waits on.
func (p *cProducer) drainQueue(h C.dshm_producer) {
	defer close(p.queueDone)
	t := time.NewTimer(queueTick)
	t.Stop()
	for {
		select {
		case <-p.queueStop:
			return
		case <-p.queueWake:
		}
		if !p.watchQueue(h, t) {
			return
		}
	}
}

// watchQueue looks at the queue every queueTick while it holds pushes; it
// returns false when the goroutine is to end (stopped, or the queue gone
// with its producer), true when the queue is empty (the goroutine parks).
func (p *cProducer) watchQueue(h C.dshm_producer, t *time.Timer) bool {
	for {
		t.Reset(queueTick)
		select {
		case <-p.queueStop:
			t.Stop()
			return false
		case <-t.C:
		}
		switch C.dshm__queue_tail(h) {
		case 0:
			return true
		case -1:
			return false
		}
	}
}

// stopQueue ends the drain goroutine, if it ever started.
func (p *cProducer) stopQueue() {
	p.queueOnce.Do(func() {}) // none starts after this
	if p.queueStop != nil {
		close(p.queueStop)
		<-p.queueDone
	}
}

//export dshmgo_producer_push_many
func dshmgo_producer_push_many(h C.dshm_producer, pushes *C.dshm_push, n C.size_t, futures *C.dshm_future,
	pushed *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	if pushed != nil {
		*pushed = 0
	}
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	if n == 0 {
		return C.DSHM_OK
	}
	if pushes == nil || uint64(n) > 1<<20 {
		return fail(invalid("dshm_producer_push_many: pushes is NULL or n is %d (at most 2^20)", uint64(n)))
	}
	var fs []C.dshm_future
	if futures != nil {
		fs = unsafe.Slice(futures, int(n))
		clear(fs)
	}
	return failOr(p.pushAll(unsafe.Slice(pushes, int(n)), fs, pushed, false))
}

//export dshmgo_producer_flush
func dshmgo_producer_flush(h C.dshm_producer, ms C.int64_t) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	return failOr(p.flush(ms))
}

func (p *cProducer) flush(ms C.int64_t) error {
	p.endSingle(ms < 0)
	if _, err := p.p.Flush().Wait(timeout(ms)); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reapLocked(true)
	err, failed := p.firstErr, p.failed
	p.firstErr, p.failed = nil, 0
	if err != nil {
		return fmt.Errorf("%d untracked push(es) failed since the last flush; the first: %w", failed, err)
	}
	return nil
}

//export dshmgo_producer_close
func dshmgo_producer_close(h C.dshm_producer) (st C.int) {
	defer recoverPanic(&st)
	p, err := take[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	p.stopQueue()
	ferr := p.flush(-1)
	if err := p.p.Close(); err != nil {
		return fail(err)
	}
	return failOr(ferr)
}

type cClaim struct {
	c   diaspora.Claim
	fut diaspora.Future[diaspora.EventID] // the commit, once asked for
}

//export dshmgo_producer_claim
func dshmgo_producer_claim(h C.dshm_producer, md *C.char, mdSize C.size_t, size C.size_t, partition C.int64_t,
	out *C.dshm_claim, data *unsafe.Pointer) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	if out == nil || data == nil {
		return fail(invalid("dshm_producer_claim: out or data is NULL"))
	}
	*out, *data = 0, nil
	m, err := metadataArg(md, mdSize, "dshm_producer_claim")
	if err != nil {
		return fail(err)
	}
	if uint64(size) > 1<<40 {
		return fail(invalid("dshm_producer_claim: size %d", uint64(size)))
	}
	var c diaspora.Claim
	switch {
	case partition == C.DSHM_ANY_PARTITION:
		c, err = p.p.Claim(m, int(size))
	case partition < 0 || partition > 1<<31:
		return fail(invalid("dshm_producer_claim: partition %d", int64(partition)))
	default:
		c, err = p.p.ClaimTo(int(partition), m, int(size))
	}
	if err != nil {
		return fail(err)
	}
	if b := c.Bytes(); len(b) > 0 {
		// The shm driver's claims are in the shared mapping, not Go
		// memory, so C may keep the pointer.
		*data = unsafe.Pointer(unsafe.SliceData(b))
	}
	*out = C.dshm_claim(newHandle(&cClaim{c: c}))
	return C.DSHM_OK
}

//export dshmgo_claim_commit
func dshmgo_claim_commit(h C.dshm_claim, ms C.int64_t, id *C.uint64_t) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cClaim](h, "claim")
	if err != nil {
		return fail(err)
	}
	if c.fut == nil {
		c.fut = c.c.Commit()
	}
	v, err := c.fut.Wait(timeout(ms))
	if status(err) == C.DSHM_ETIMEOUT {
		return fail(fmt.Errorf("dshm_claim_commit: %w (the claim stays; commit it again to wait)", err))
	}
	_, _ = take[*cClaim](h, "claim")
	if err != nil {
		return fail(err)
	}
	if id != nil {
		*id = C.uint64_t(v)
	}
	return C.DSHM_OK
}

//export dshmgo_claim_abort
func dshmgo_claim_abort(h C.dshm_claim) (st C.int) {
	defer recoverPanic(&st)
	c, err := take[*cClaim](h, "claim")
	if err != nil {
		return fail(err)
	}
	if c.fut != nil {
		return fail(invalid("dshm_claim_abort: the claim was already committed"))
	}
	return failOr(c.c.Abort())
}

// cFuture is a push's or a pull's future.
type cFuture struct {
	id diaspora.Future[diaspora.EventID]

	mu    sync.Mutex
	ev    diaspora.Future[diaspora.Event]
	cons  *cConsumer
	taken bool // its event was handed out
}

//export dshmgo_future_wait_id
func dshmgo_future_wait_id(h C.dshm_future, ms C.int64_t, id *C.uint64_t) (st C.int) {
	defer recoverPanic(&st)
	f, err := lookup[*cFuture](h, "future")
	if err != nil {
		return fail(err)
	}
	if f.id == nil {
		return fail(invalid("dshm_future_wait_id: future %d is a pull's; use dshm_future_wait_event", uint64(h)))
	}
	v, err := f.id.Wait(timeout(ms))
	if err != nil {
		return fail(err)
	}
	if id != nil {
		*id = C.uint64_t(v)
	}
	return C.DSHM_OK
}

//export dshmgo_future_completed
func dshmgo_future_completed(h C.dshm_future, done *C.int) (st C.int) {
	defer recoverPanic(&st)
	f, err := lookup[*cFuture](h, "future")
	if err != nil {
		return fail(err)
	}
	if done == nil {
		return fail(invalid("dshm_future_completed: done is NULL"))
	}
	c := false
	if f.id != nil {
		c = f.id.Completed()
	} else {
		c = f.ev.Completed()
	}
	*done = 0
	if c {
		*done = 1
	}
	return C.DSHM_OK
}
