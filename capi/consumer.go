package main

/*
#include <stdlib.h>
#include <string.h>
#include "internal.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
)

// cConsumer is a consumer, and the pull whose wait timed out: the next
// pull waits for it rather than start another, so no event is lost.
type cConsumer struct {
	c diaspora.Consumer

	mu       sync.Mutex
	pending  diaspora.Future[diaspora.Event]
	deferred error // met while filling a batch that was handed out: the next pull's

	partsMu sync.Mutex
	parts   map[string]int // partition information → index

	copies bool // data copied into C memory its events free

	batch []diaspora.Event // PullBatch's room, under mu

	// Scratch of newBatch, under scratchMu.
	scratchMu sync.Mutex
	mds       [][]byte

	lastPart atomic.Pointer[partCache]

	// For batches of records: per partition slot of the driver's
	// consumer, the partition's index and information (set once, under mu).
	slotIndex []int
	slotInfo  [][]byte
	maxInfo   int // the longest of slotInfo

	recMu    sync.Mutex
	recSpare [][]batchRecord // of released batches of records
}

// mallocCopy is the allocator of "data": "copy": one C buffer, freed with
// the event's handle.
func mallocCopy(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataView, error) {
	if d.Size() == 0 {
		return nil, nil
	}
	p := C.malloc(C.size_t(d.Size()))
	if p == nil {
		return nil, fmt.Errorf("diaspora_shm: out of C memory for %d bytes of data", d.Size())
	}
	return diaspora.DataView{unsafe.Slice((*byte)(p), d.Size())}, nil
}

type consumerArgs struct {
	commonArgs
	Targets *[]int `json:"targets"`
	Data    string `json:"data"`
}

// Limits on what a selector or allocator may return in one call.
const (
	maxRanges  = 1 << 20
	maxBuffers = 1 << 16
)

func cSelector(fn C.dshm_selector_fn, ctx unsafe.Pointer) diaspora.DataSelector {
	return func(md diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
		b := md.Bytes()
		var ranges [16]C.dshm_range
		buf := ranges[:]
		for {
			var n C.size_t
			rc := C.dshm__call_selector(fn, ctx, bytesPtr(b), C.size_t(len(b)), C.size_t(d.Size()),
				&buf[0], C.size_t(len(buf)), &n)
			if rc == C.DSHM_ERANGE && uint64(n) > uint64(len(buf)) && uint64(n) <= maxRanges {
				buf = make([]C.dshm_range, int(n))
				continue
			}
			if rc != C.DSHM_OK {
				return diaspora.DataDescriptor{}, fmt.Errorf("diaspora_shm: the data selector returned %d", int(rc))
			}
			if uint64(n) > uint64(len(buf)) {
				return diaspora.DataDescriptor{}, fmt.Errorf("diaspora_shm: the data selector returned %d ranges in room for %d", uint64(n), len(buf))
			}
			if n == 0 {
				return diaspora.DataDescriptor{}, nil
			}
			segs := make([]diaspora.Segment, int(n))
			for i := range segs {
				r := buf[i]
				if uint64(r.offset) > 1<<62 || uint64(r.size) > 1<<62 {
					return diaspora.DataDescriptor{}, fmt.Errorf("diaspora_shm: the data selector's range %d (offset %d, size %d) is past any data", i, uint64(r.offset), uint64(r.size))
				}
				segs[i] = diaspora.Segment{Offset: int(r.offset), Size: int(r.size)}
			}
			sel, err := d.UnstructuredView(segs...)
			if err != nil {
				return diaspora.DataDescriptor{}, fmt.Errorf("diaspora_shm: the data selector's ranges: %w", err)
			}
			return sel, nil
		}
	}
}

func cAllocator(fn C.dshm_allocator_fn, ctx unsafe.Pointer) diaspora.DataAllocator {
	return func(md diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataView, error) {
		b := md.Bytes()
		var bufs [8]C.dshm_buffer
		buf := bufs[:]
		for {
			var n C.size_t
			rc := C.dshm__call_allocator(fn, ctx, bytesPtr(b), C.size_t(len(b)), C.size_t(d.Size()),
				&buf[0], C.size_t(len(buf)), &n)
			if rc == C.DSHM_ERANGE && uint64(n) > uint64(len(buf)) && uint64(n) <= maxBuffers {
				buf = make([]C.dshm_buffer, int(n))
				continue
			}
			if rc != C.DSHM_OK {
				return nil, fmt.Errorf("diaspora_shm: the data allocator returned %d", int(rc))
			}
			if uint64(n) > uint64(len(buf)) {
				return nil, fmt.Errorf("diaspora_shm: the data allocator returned %d buffers in room for %d", uint64(n), len(buf))
			}
			view := make(diaspora.DataView, 0, int(n))
			total := 0
			for i, bb := range buf[:n] {
				if bb.size == 0 {
					continue
				}
				if bb.data == nil || uint64(bb.size) > 1<<40 {
					return nil, fmt.Errorf("diaspora_shm: the data allocator's buffer %d is NULL or of %d bytes", i, uint64(bb.size))
				}
				view = append(view, unsafe.Slice((*byte)(bb.data), int(bb.size)))
				total += int(bb.size)
			}
			if total < d.Size() {
				return nil, fmt.Errorf("diaspora_shm: the data allocator gave %d bytes for %d", total, d.Size())
			}
			return view, nil
		}
	}
}

// bytesPtr points C at b for the length of a call (b holds no Go pointers).
func bytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.SliceData(b)))
}

//export dshmgo_consumer_open
func dshmgo_consumer_open(h C.dshm_topic, name, argsJSON *C.char, sel C.dshm_selector_fn, alloc C.dshm_allocator_fn,
	ctx unsafe.Pointer, out *C.dshm_consumer) (st C.int) {
	defer recoverPanic(&st)
	t, err := lookup[*cTopic](h, "topic")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_consumer_open: out is NULL"))
	}
	*out = 0
	n, err := goString(name, "dshm_consumer_open: name")
	if err != nil {
		return fail(err)
	}
	var a consumerArgs
	if err := decodeArgs(argsJSON, &a, "dshm_consumer_open"); err != nil {
		return fail(err)
	}
	args, err := a.args("dshm_consumer_open")
	if err != nil {
		return fail(err)
	}
	if a.Targets != nil {
		args = append(args, diaspora.Targets(*a.Targets))
	}
	switch {
	case sel != nil:
		if a.Data != "" {
			return fail(invalid("dshm_consumer_open: both a selector and \"data\": %q", a.Data))
		}
		args = append(args, cSelector(sel, ctx))
	case a.Data == "" || a.Data == "none":
	case a.Data == "all":
		args = append(args, diaspora.FullDataSelector)
	case a.Data == "copy":
		if alloc != nil {
			return fail(invalid("dshm_consumer_open: both an allocator and \"data\": \"copy\""))
		}
		args = append(args, diaspora.FullDataSelector, diaspora.DataAllocator(mallocCopy))
	default:
		return fail(invalid("dshm_consumer_open: data %q: want \"none\", \"all\" or \"copy\"", a.Data))
	}
	if alloc != nil {
		args = append(args, cAllocator(alloc, ctx))
	}
	c, err := t.t.Consumer(n, args...)
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_consumer(newHandle(&cConsumer{c: c, parts: map[string]int{}, copies: a.Data == "copy"}))
	return C.DSHM_OK
}

// pull waits for the next event; a pull that timed out is waited again.
func (c *cConsumer) pull(ms C.int64_t) (diaspora.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.pending
	if f == nil {
		f = c.c.Pull()
	}
	ev, err := f.Wait(timeout(ms))
	if errors.Is(err, diaspora.ErrTimeout) && !f.Completed() {
		c.pending = f
		return ev, err
	}
	c.pending = nil
	return ev, err
}

//export dshmgo_consumer_pull
func dshmgo_consumer_pull(h C.dshm_consumer, ms C.int64_t, out *C.dshm_event) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_consumer_pull: out is NULL"))
	}
	*out = 0
	ev, err := c.pull(ms)
	if err != nil {
		return fail(err)
	}
	*out = C.dshm_event(newHandle(c.newEvent(ev)))
	return C.DSHM_OK
}

//export dshmgo_consumer_pull_async
func dshmgo_consumer_pull_async(h C.dshm_consumer, out *C.dshm_future) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_consumer_pull_async: out is NULL"))
	}
	c.mu.Lock()
	f := c.pending
	c.pending = nil
	c.mu.Unlock()
	if f == nil {
		f = c.c.Pull()
	}
	*out = C.dshm_future(newHandle(&cFuture{ev: f, cons: c}))
	return C.DSHM_OK
}

//export dshmgo_future_wait_event
func dshmgo_future_wait_event(h C.dshm_future, ms C.int64_t, out *C.dshm_event) (st C.int) {
	defer recoverPanic(&st)
	f, err := lookup[*cFuture](h, "future")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_future_wait_event: out is NULL"))
	}
	*out = 0
	if f.ev == nil {
		return fail(invalid("dshm_future_wait_event: future %d is a push's; use dshm_future_wait_id", uint64(h)))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken {
		return fail(invalid("dshm_future_wait_event: the event of future %d was already handed out", uint64(h)))
	}
	ev, err := f.ev.Wait(timeout(ms))
	if err != nil {
		return fail(err)
	}
	f.taken = true
	*out = C.dshm_event(newHandle(f.cons.newEvent(ev)))
	return C.DSHM_OK
}

//export dshmgo_consumer_process
func dshmgo_consumer_process(h C.dshm_consumer, fn C.dshm_processor_fn, ctx unsafe.Pointer, ms C.int64_t,
	max C.uint64_t, pool C.dshm_thread_pool) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	if fn == nil {
		return fail(invalid("dshm_consumer_process: processor is NULL"))
	}
	var tp diaspora.ThreadPool
	if pool != 0 {
		p, err := lookup[*cPool](pool, "thread pool")
		if err != nil {
			return fail(err)
		}
		tp = p.p
	}
	n := diaspora.InfiniteEvents
	if max != 0 {
		n = diaspora.NumEvents(max)
	}
	err = c.c.Process(func(ev diaspora.Event) error {
		rc := C.dshm__call_processor(fn, ctx, C.dshm_event(newHandle(c.newEvent(ev))))
		switch {
		case rc == C.DSHM_OK:
			return nil
		case rc == C.DSHM_ESTOP:
			return diaspora.ErrStopProcessing
		}
		return fmt.Errorf("diaspora_shm: the processor returned %d for event %d", int(rc), ev.ID())
	}, timeout(ms), n, tp)
	if err != nil && status(err) == C.DSHM_ETIMEOUT {
		return C.DSHM_OK // Process ends quietly when no event comes in time
	}
	return failOr(err)
}

//export dshmgo_consumer_close
func dshmgo_consumer_close(h C.dshm_consumer) (st C.int) {
	defer recoverPanic(&st)
	c, err := take[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	return failOr(c.c.Close())
}

// cEvent is an event handed to C: its metadata and partition information
// copied into C memory (an arena shared by the events of one pull), its
// data pinned while the handle lives when it is Go memory.
type cEvent struct {
	ev     diaspora.Event
	arena  *cArena
	md     unsafe.Pointer // metadata NUL, then partition information NUL, in the arena
	mdLen  int
	part   int
	data   diaspora.DataView
	size   int
	pinner *runtime.Pinner // nil unless the data is Go memory

	owned bool // data from mallocCopy

	mu       sync.Mutex
	released bool
}

// cArena is C memory holding the strings of the events of one pull, freed
// when the last of them is released.
type cArena struct {
	p    unsafe.Pointer
	refs atomic.Int64
}

func (a *cArena) release() {
	if a.refs.Add(-1) == 0 {
		C.free(a.p)
	}
}

// newEvents wraps the events of one pull, their strings in one C arena.
func (c *cConsumer) newEvents(evs []diaspora.Event) []*cEvent {
	total := 0
	for _, ev := range evs {
		total += len(ev.Metadata().Bytes()) + len(ev.Partition().Metadata.Bytes()) + 2
	}
	a := &cArena{p: C.malloc(C.size_t(total))}
	if a.p == nil {
		panic(fmt.Sprintf("out of C memory for %d bytes of metadata", total))
	}
	a.refs.Store(int64(len(evs)))
	mem := unsafe.Slice((*byte)(a.p), total)
	out := make([]*cEvent, len(evs))
	slab := make([]cEvent, len(evs))
	off := 0
	for i, ev := range evs {
		md := ev.Metadata().Bytes()
		pi := ev.Partition().Metadata.Bytes()
		e := &slab[i]
		*e = cEvent{ev: ev, arena: a, md: unsafe.Pointer(&mem[off]), mdLen: len(md), data: ev.Data(),
			part: c.partitionIndex(pi), owned: c.copies}
		off += copy(mem[off:], md)
		mem[off] = 0
		off++
		off += copy(mem[off:], pi)
		mem[off] = 0
		off++
		e.size = pinData(ev, e.data, &e.pinner)
		out[i] = e
	}
	return out
}

func (c *cConsumer) newEvent(ev diaspora.Event) *cEvent { return c.newEvents([]diaspora.Event{ev})[0] }

// partCache remembers the index of the last partition information seen.
type partCache struct {
	p   *byte
	n   int
	idx int
}

// partitionIndex reads the "id" of a partition's information, once per
// partition.
func (c *cConsumer) partitionIndex(pi []byte) int {
	if pc := c.lastPart.Load(); pc != nil && pc.p == unsafe.SliceData(pi) && pc.n == len(pi) {
		return pc.idx
	}
	c.partsMu.Lock()
	defer c.partsMu.Unlock()
	i, ok := c.parts[string(pi)]
	if !ok {
		var v struct {
			ID int `json:"id"`
		}
		md, err := diaspora.MetadataFromBytes(append([]byte(nil), pi...))
		if err == nil {
			err = md.Decode(&v)
		}
		if err != nil {
			v.ID = 0
		}
		i = v.ID
		c.parts[string(pi)] = i
	}
	c.lastPart.Store(&partCache{p: unsafe.SliceData(pi), n: len(pi), idx: i})
	return i
}

// pinData pins the segments of d (the data of ev) in *p, made when first
// needed, if they are Go heap memory, and returns their total size. Data
// in the ring or in C memory may be kept by C as it is; Go heap memory (an
// event read back from the log) is pinned while C holds it. A Pinner costs
// a finalizer: only when needed.
func pinData(ev diaspora.Event, d diaspora.DataView, p **runtime.Pinner) int {
	pin := true
	if h, ok := ev.Interface().(interface{ DataOnGoHeap() bool }); ok {
		pin = h.DataOnGoHeap()
	}
	size := 0
	for _, s := range d {
		if len(s) == 0 {
			continue
		}
		if pin {
			if *p == nil {
				*p = new(runtime.Pinner)
			}
			(*p).Pin(unsafe.SliceData(s))
		}
		size += len(s)
	}
	return size
}

// fillData writes what out says of data d: its size, its segments' count
// and the first of them.
func fillData(out *C.dshm_event_info, d diaspora.DataView, size int) {
	out.data_size = C.size_t(size)
	out.first = C.dshm_segment{}
	first, n := segmentsOf(d)
	if n > 0 {
		out.first = C.dshm_segment{data: unsafe.Pointer(unsafe.SliceData(first)), size: C.size_t(len(first))}
	}
	out.num_segments = C.size_t(n)
}

// segmentsOf returns the first non-empty segment of d and how many
// non-empty segments d has: what C is told of an event's data.
func segmentsOf(d diaspora.DataView) (first []byte, n int) {
	for _, s := range d {
		if len(s) > 0 {
			if n == 0 {
				first = s
			}
			n++
		}
	}
	return first, n
}

// freeCopy frees the data of an event of a "copy" consumer: one C buffer
// from mallocCopy.
func freeCopy(d diaspora.DataView) {
	if len(d) > 0 && len(d[0]) > 0 {
		C.free(unsafe.Pointer(unsafe.SliceData(d[0])))
	}
}

func (e *cEvent) free() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.released {
		return
	}
	e.released = true
	e.arena.release()
	e.arena, e.md = nil, nil
	if e.pinner != nil {
		e.pinner.Unpin()
	}
	if e.owned {
		freeCopy(e.data)
	}
	e.data = nil
}

//export dshmgo_event_get_info
func dshmgo_event_get_info(h C.dshm_event, out *C.dshm_event_info) (st C.int) {
	defer recoverPanic(&st)
	e, err := lookup[*cEvent](h, "event")
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(invalid("dshm_event_get_info: out is NULL"))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.released {
		return fail(errHandle{fmt.Sprintf("event handle %d is not live: released", uint64(h))})
	}
	e.fill(out)
	return C.DSHM_OK
}

func (e *cEvent) fill(out *C.dshm_event_info) {
	out.id = C.uint64_t(e.ev.ID())
	out.partition = C.size_t(e.part)
	out.metadata = (*C.char)(e.md)
	out.metadata_size = C.size_t(e.mdLen)
	out.partition_info = (*C.char)(unsafe.Add(e.md, e.mdLen+1))
	fillData(out, e.data, e.size)
}

//export dshmgo_consumer_pull_batch
func dshmgo_consumer_pull_batch(h C.dshm_consumer, ms C.int64_t, max C.size_t, events *C.dshm_event,
	infos *C.dshm_event_info, n *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	if n == nil || events == nil || max == 0 {
		return fail(invalid("dshm_consumer_pull_batch: n or events is NULL, or max is 0"))
	}
	*n = 0
	if uint64(max) > 1<<16 {
		max = 1 << 16
	}
	evs, err := c.pullBatch(ms, int(max))
	if err != nil {
		return fail(err)
	}
	hs := unsafe.Slice(events, len(evs))
	var is []C.dshm_event_info
	if infos != nil {
		is = unsafe.Slice(infos, len(evs))
	}
	ces := c.newEvents(evs)
	newHandles(ces, func(i int, h uint64) {
		hs[i] = C.dshm_event(h)
		if is != nil {
			ces[i].fill(&is[i])
		}
	})
	*n = C.size_t(len(evs))
	return C.DSHM_OK
}

// pullBatch takes up to max events: the pull that timed out first, then a
// batch from the driver when it has batch pulls.
func (c *cConsumer) pullBatch(ms C.int64_t, max int) ([]diaspora.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deferred; err != nil {
		c.deferred = nil
		return nil, err
	}
	if c.pending != nil {
		f := c.pending
		ev, err := f.Wait(timeout(ms))
		if errors.Is(err, diaspora.ErrTimeout) && !f.Completed() {
			return nil, err
		}
		c.pending = nil
		if err != nil {
			return nil, err
		}
		return []diaspora.Event{ev}, nil
	}
	if bc, ok := c.c.Interface().(diaspora.BatchConsumerInterface); ok {
		if cap(c.batch) < max {
			c.batch = make([]diaspora.Event, max)
		}
		k, err := bc.PullBatch(c.batch[:max], timeout(ms))
		if err != nil {
			return nil, err
		}
		// A pull hands out what one pass over a partition found (64
		// events by default); a caller in another language pays per call
		// (Python ~10 µs), so more passes that need no wait fill the batch.
		for k < max && c.batch[k-1].ID() != diaspora.NoMoreEvents {
			more, err := bc.PullBatch(c.batch[k:max], 0)
			if err != nil {
				if !errors.Is(err, diaspora.ErrTimeout) {
					c.deferred = err // this batch stands; the next pull reports it
				}
				break
			}
			k += more
		}
		out := append([]diaspora.Event(nil), c.batch[:k]...)
		clear(c.batch[:k])
		return out, nil
	}
	f := c.c.Pull()
	ev, err := f.Wait(timeout(ms))
	if errors.Is(err, diaspora.ErrTimeout) && !f.Completed() {
		c.pending = f
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	return []diaspora.Event{ev}, nil
}

//export dshmgo_event_release_many
func dshmgo_event_release_many(events *C.dshm_event, n C.size_t) (st C.int) {
	defer recoverPanic(&st)
	if n == 0 {
		return C.DSHM_OK
	}
	if events == nil || uint64(n) > 1<<30 {
		return fail(invalid("dshm_event_release_many: events is NULL or n is %d", uint64(n)))
	}
	var first error
	hs := unsafe.Slice(events, int(n))
	evs := make([]*cEvent, len(hs))
	handles.Lock()
	for i, h := range hs {
		v, ok := handles.m[uint64(h)]
		e, err := checkKind[*cEvent](v, ok, C.uint64_t(h), "event")
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		delete(handles.m, uint64(h))
		evs[i] = e
	}
	handles.Unlock()
	for _, e := range evs {
		if e != nil {
			e.free()
		}
	}
	return failOr(first)
}

//export dshmgo_event_segments
func dshmgo_event_segments(h C.dshm_event, out *C.dshm_segment, cap C.size_t, n *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	e, err := lookup[*cEvent](h, "event")
	if err != nil {
		return fail(err)
	}
	if n == nil {
		return fail(invalid("dshm_event_segments: n is NULL"))
	}
	return writeSegments(e.data, out, cap, n, "dshm_event_segments")
}

// writeSegments writes the non-empty segments of d (up to cap) to out and
// their count to *n.
func writeSegments(d diaspora.DataView, out *C.dshm_segment, cap C.size_t, n *C.size_t, call string) C.int {
	_, k := segmentsOf(d)
	*n = C.size_t(k)
	if uint64(cap) < uint64(k) || (k > 0 && out == nil) {
		return fail(fmt.Errorf("diaspora_shm: %s: %w: the event has %d segments, room for %d", call, errRange, k, uint64(cap)))
	}
	if k == 0 {
		return C.DSHM_OK
	}
	dst := unsafe.Slice(out, k)
	i := 0
	for _, s := range d {
		if len(s) > 0 {
			dst[i] = C.dshm_segment{data: unsafe.Pointer(unsafe.SliceData(s)), size: C.size_t(len(s))}
			i++
		}
	}
	return C.DSHM_OK
}

//export dshmgo_event_read
func dshmgo_event_read(h C.dshm_event, offset C.size_t, dst unsafe.Pointer, size C.size_t, copied *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	e, err := lookup[*cEvent](h, "event")
	if err != nil {
		return fail(err)
	}
	if copied != nil {
		*copied = 0
	}
	if size == 0 {
		return C.DSHM_OK
	}
	if dst == nil {
		return fail(invalid("dshm_event_read: dst is NULL"))
	}
	if uint64(offset) > uint64(e.size) {
		return fail(invalid("dshm_event_read: offset %d past the event's %d bytes", uint64(offset), e.size))
	}
	k := e.data.Read(unsafe.Slice((*byte)(dst), int(min(uint64(size), uint64(e.size)))), int(offset))
	if copied != nil {
		*copied = C.size_t(k)
	}
	return C.DSHM_OK
}

//export dshmgo_event_acknowledge
func dshmgo_event_acknowledge(h C.dshm_event) (st C.int) {
	defer recoverPanic(&st)
	e, err := lookup[*cEvent](h, "event")
	if err != nil {
		return fail(err)
	}
	return failOr(e.ev.Acknowledge())
}
