package main

/*
#include "internal.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
)

// cProducer is a producer and the pushes made without a future handle,
// whose failures the next flush reports.
type cProducer struct {
	p diaspora.Producer

	mu        sync.Mutex
	untracked []diaspora.Future[diaspora.EventID]
	failed    int
	firstErr  error
}

// pruneAt is how many untracked pushes a producer keeps before it drops
// the completed ones (keeping their errors).
const pruneAt = 4096

func (p *cProducer) track(f diaspora.Future[diaspora.EventID]) {
	p.mu.Lock()
	p.untracked = append(p.untracked, f)
	if len(p.untracked) >= pruneAt && len(p.untracked)%pruneAt == 0 {
		p.pruneLocked(false)
	}
	p.mu.Unlock()
}

// pushName names push i of a push_many in an error, made only then.
type pushName int

func (i pushName) String() string { return fmt.Sprintf("dshm_producer_push_many: push %d", int(i)) }

func (p *cProducer) trackAll(fs []diaspora.Future[diaspora.EventID]) {
	p.mu.Lock()
	before := len(p.untracked)
	p.untracked = append(p.untracked, fs...)
	if len(p.untracked)/pruneAt > before/pruneAt {
		p.pruneLocked(false)
	}
	p.mu.Unlock()
}

// pruneLocked drops the completed untracked pushes (all of them when
// waiting), remembering the first failure.
func (p *cProducer) pruneLocked(all bool) {
	kept := p.untracked[:0]
	for _, f := range p.untracked {
		if !all && !f.Completed() {
			kept = append(kept, f)
			continue
		}
		if _, err := f.Wait(0); err != nil {
			if errors.Is(err, diaspora.ErrTimeout) && !f.Completed() {
				kept = append(kept, f)
				continue
			}
			p.failed++
			if p.firstErr == nil {
				p.firstErr = err
			}
		}
	}
	clear(p.untracked[len(kept):])
	p.untracked = kept
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
	*out = C.dshm_producer(newHandle(&cProducer{p: p}))
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

// dataArg views C segments as a DataView, without a copy.
func dataArg(segs *C.dshm_segment, n C.size_t, what string) (diaspora.DataView, error) {
	if n == 0 {
		return nil, nil
	}
	if segs == nil {
		return nil, invalid("%s: segments is NULL with %d segments", what, uint64(n))
	}
	if uint64(n) > 1<<20 {
		return nil, invalid("%s: %d segments", what, uint64(n))
	}
	cs := unsafe.Slice(segs, int(n))
	view := make(diaspora.DataView, 0, len(cs))
	for i, s := range cs {
		if s.size == 0 {
			continue
		}
		if s.data == nil {
			return nil, invalid("%s: segment %d is NULL with size %d", what, i, uint64(s.size))
		}
		if uint64(s.size) > 1<<40 {
			return nil, invalid("%s: segment %d of %d bytes", what, i, uint64(s.size))
		}
		view = append(view, unsafe.Slice((*byte)(s.data), int(s.size)))
	}
	return view, nil
}

//export dshmgo_producer_push
func dshmgo_producer_push(h C.dshm_producer, md *C.char, mdSize C.size_t, segs *C.dshm_segment, nsegs C.size_t,
	partition C.int64_t, out *C.dshm_future) (st C.int) {
	defer recoverPanic(&st)
	p, err := lookup[*cProducer](h, "producer")
	if err != nil {
		return fail(err)
	}
	if out != nil {
		*out = 0
	}
	m, err := metadataArg(md, mdSize, "dshm_producer_push")
	if err != nil {
		return fail(err)
	}
	data, err := dataArg(segs, nsegs, "dshm_producer_push")
	if err != nil {
		return fail(err)
	}
	var f diaspora.Future[diaspora.EventID]
	switch {
	case partition == C.DSHM_ANY_PARTITION:
		f = p.p.Push(m, data)
	case partition < 0 || partition > 1<<31:
		return fail(invalid("dshm_producer_push: partition %d", int64(partition)))
	default:
		f = p.p.PushTo(int(partition), m, data)
	}
	if out == nil {
		p.track(f)
		return C.DSHM_OK
	}
	*out = C.dshm_future(newHandle(&cFuture{id: f}))
	return C.DSHM_OK
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
	ps := unsafe.Slice(pushes, int(n))
	var fs []C.dshm_future
	if futures != nil {
		fs = unsafe.Slice(futures, int(n))
		clear(fs)
	}
	// The metadata of all the pushes in one Go buffer, their segment views
	// in one array: two allocations per call, not per push.
	total, nseg := 0, 0
	for i := range ps {
		if uint64(ps[i].metadata_size) > 1<<31-1 || uint64(ps[i].num_segments) > 1<<20 {
			return fail(invalid("dshm_producer_push_many: push %d: metadata of %d bytes, %d segments", i,
				uint64(ps[i].metadata_size), uint64(ps[i].num_segments)))
		}
		total += int(ps[i].metadata_size)
		nseg += int(ps[i].num_segments)
		if total > 1<<31-1 || nseg > 1<<24 {
			// Checked before anything is allocated: a call declaring more
			// would take the process down with it.
			return fail(invalid("dshm_producer_push_many: pushes 0..%d declare %d bytes of metadata and %d segments (at most 2^31-1 and 2^24 in one call)", i, total, nseg))
		}
	}
	mdBuf := make([]byte, 0, total)
	views := make([][]byte, 0, nseg)
	var tracked []diaspora.Future[diaspora.EventID]
	if fs == nil {
		tracked = make([]diaspora.Future[diaspora.EventID], 0, len(ps))
	}
	defer func() {
		if len(tracked) > 0 {
			p.trackAll(tracked)
		}
	}()
	for i := range ps {
		what := pushName(i)
		q := &ps[i]
		var m diaspora.Metadata
		if q.metadata != nil || q.metadata_size != 0 {
			if q.metadata == nil {
				return fail(invalid("%s: metadata is NULL with size %d", what, uint64(q.metadata_size)))
			}
			src := unsafe.Slice((*byte)(unsafe.Pointer(q.metadata)), int(q.metadata_size))
			if string(src) != "{}" { // the zero Metadata is {}: nothing to copy or scan
				start := len(mdBuf)
				mdBuf = append(mdBuf, src...)
				if m, err = diaspora.MetadataFromBytes(mdBuf[start:len(mdBuf):len(mdBuf)]); err != nil {
					return fail(fmt.Errorf("%s: %w", what, err))
				}
			}
		}
		var data diaspora.DataView
		if q.num_segments > 0 {
			if q.segments == nil {
				return fail(invalid("%s: segments is NULL with %d segments", what, uint64(q.num_segments)))
			}
			start := len(views)
			for k, sg := range unsafe.Slice(q.segments, int(q.num_segments)) {
				if sg.size == 0 {
					continue
				}
				if sg.data == nil || uint64(sg.size) > 1<<40 {
					return fail(invalid("%s: segment %d is NULL or of %d bytes", what, k, uint64(sg.size)))
				}
				views = append(views, unsafe.Slice((*byte)(sg.data), int(sg.size)))
			}
			data = views[start:len(views):len(views)]
		}
		var f diaspora.Future[diaspora.EventID]
		switch {
		case q.partition == C.DSHM_ANY_PARTITION:
			f = p.p.Push(m, data)
		case q.partition < 0 || q.partition > 1<<31:
			return fail(invalid("%s: partition %d", what, int64(q.partition)))
		default:
			f = p.p.PushTo(int(q.partition), m, data)
		}
		if fs != nil {
			fs[i] = C.dshm_future(newHandle(&cFuture{id: f}))
		} else {
			tracked = append(tracked, f)
		}
		if pushed != nil {
			*pushed = C.size_t(i + 1)
		}
	}
	return C.DSHM_OK
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
	if _, err := p.p.Flush().Wait(timeout(ms)); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked(true)
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
