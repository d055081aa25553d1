package main

/*
#include <stdlib.h>
#include "internal.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
)

// cBatch is the events of one dshm_batch_pull under one handle: a pull of
// many small events costs no handle, no Go object and no map entry per
// event, which is what a caller in another language pays most for
// (dshm_consumer_pull_batch makes all three).
//
// Its only memory per event is the events themselves: at millions of
// events a second, what a pull allocates paces the garbage collector.
type cBatch struct {
	c      *cConsumer
	evs    []diaspora.Event
	partOf []uint32 // for each event, which of the batch's nparts partitions
	nparts int
	arena  unsafe.Pointer  // C memory: each event's metadata NUL, and each partition's information NUL once
	pinner *runtime.Pinner // nil unless some data is Go memory (read back from the log)
	owned  bool            // data from mallocCopy, freed with the batch
	mu     sync.Mutex      // against a release while another thread acknowledges
	done   bool            // released
}

func newBatch(c *cConsumer, evs []diaspora.Event, infos []C.dshm_event_info) *cBatch {
	b := &cBatch{c: c, evs: evs, owned: c.copies}
	c.scratchMu.Lock()
	defer c.scratchMu.Unlock()
	// The partitions' information is the same text for every event of a
	// partition: once per partition in the arena. Runs of one partition
	// are the rule: an event is compared with the last one's partition by
	// the driver's index, or by the text's address, before the text.
	type partText struct {
		pi  []byte
		off int
		idx int // the partition's index
		at  int // the driver's index of it (-1: not known)
	}
	var parts []partText
	if cap(c.mds) < len(evs) {
		c.mds = make([][]byte, len(evs))
	}
	mds := c.mds[:len(evs)]
	partOf := make([]uint32, len(evs))
	b.partOf = partOf
	defer clear(mds) // no metadata kept alive by the scratch
	total, last := 0, -1
	for i, ev := range evs {
		mds[i] = ev.Metadata().Bytes()
		total += len(mds[i]) + 1
		// The shm driver's events say their partition's index: the
		// information (a copy of a struct) is asked for once a partition.
		at := -1
		if x, ok := ev.Interface().(interface{ PartitionIndex() int }); ok {
			if at = x.PartitionIndex(); last >= 0 && at >= 0 && parts[last].at == at {
				partOf[i] = uint32(last)
				continue
			}
		}
		pi := ev.Partition().Metadata.Bytes()
		if last >= 0 && unsafe.SliceData(parts[last].pi) == unsafe.SliceData(pi) && len(parts[last].pi) == len(pi) {
			partOf[i] = uint32(last)
			continue
		}
		k := 0
		for k < len(parts) && string(parts[k].pi) != string(pi) {
			k++
		}
		if k == len(parts) {
			parts = append(parts, partText{pi: pi, idx: c.partitionIndex(pi), at: at})
			total += len(pi) + 1
		}
		partOf[i], last = uint32(k), k
	}
	b.nparts = len(parts)
	b.arena = C.malloc(C.size_t(total))
	if b.arena == nil {
		panic(fmt.Sprintf("out of C memory for %d bytes of metadata", total))
	}
	mem := unsafe.Slice((*byte)(b.arena), total)
	off := 0
	for k := range parts {
		parts[k].off = off
		off += copy(mem[off:], parts[k].pi)
		mem[off] = 0
		off++
	}
	for i, ev := range evs {
		md := mds[i]
		out := &infos[i]
		out.id = C.uint64_t(ev.ID())
		p := &parts[partOf[i]]
		out.partition = C.size_t(p.idx)
		out.partition_info = (*C.char)(unsafe.Pointer(&mem[p.off]))
		out.metadata = (*C.char)(unsafe.Pointer(&mem[off]))
		out.metadata_size = C.size_t(len(md))
		off += copy(mem[off:], md)
		mem[off] = 0
		off++
		d := ev.Data()
		fillData(out, d, pinData(ev, d, &b.pinner))
	}
	return b
}

// free gives back the C memory, the pins and the copies; the events' ring
// space is released as their acknowledgements say.
func (b *cBatch) free() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	C.free(b.arena)
	b.arena = nil
	if b.pinner != nil {
		b.pinner.Unpin()
	}
	if b.owned {
		for _, ev := range b.evs {
			freeCopy(ev.Data())
		}
	}
	b.evs = nil
}

// event returns event i of the batch, under b.mu.
func (b *cBatch) event(i C.size_t, call string) (diaspora.Event, diaspora.DataView, error) {
	if b.done {
		return diaspora.Event{}, nil, errHandle{msg: call + ": the batch was released"}
	}
	if uint64(i) >= uint64(len(b.evs)) {
		return diaspora.Event{}, nil, invalid("%s: event %d of a batch of %d", call, uint64(i), len(b.evs))
	}
	return b.evs[i], b.evs[i].Data(), nil
}

//export dshmgo_batch_pull
func dshmgo_batch_pull(h C.dshm_consumer, ms C.int64_t, max C.size_t, out *C.dshm_batch,
	infos *C.dshm_event_info, n *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	c, err := lookup[*cConsumer](h, "consumer")
	if err != nil {
		return fail(err)
	}
	if n == nil || out == nil || infos == nil || max == 0 {
		return fail(invalid("dshm_batch_pull: batch, infos or n is NULL, or max is 0"))
	}
	*n, *out = 0, 0
	if uint64(max) > 1<<16 {
		max = 1 << 16
	}
	evs, err := c.pullBatch(ms, int(max))
	if err != nil {
		return fail(err)
	}
	b := newBatch(c, evs, unsafe.Slice(infos, len(evs)))
	*out = C.dshm_batch(newHandle(b))
	*n = C.size_t(len(evs))
	return C.DSHM_OK
}

//export dshmgo_batch_segments
func dshmgo_batch_segments(h C.dshm_batch, i C.size_t, out *C.dshm_segment, cap C.size_t, n *C.size_t) (st C.int) {
	defer recoverPanic(&st)
	b, err := lookup[*cBatch](h, "batch")
	if err != nil {
		return fail(err)
	}
	if n == nil {
		return fail(invalid("dshm_batch_segments: n is NULL"))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, d, err := b.event(i, "dshm_batch_segments")
	if err != nil {
		return fail(err)
	}
	return writeSegments(d, out, cap, n, "dshm_batch_segments")
}

//export dshmgo_batch_acknowledge
func dshmgo_batch_acknowledge(h C.dshm_batch, i C.size_t) (st C.int) {
	defer recoverPanic(&st)
	b, err := lookup[*cBatch](h, "batch")
	if err != nil {
		return fail(err)
	}
	b.mu.Lock()
	if i == ^C.size_t(0) {
		// The last event of each partition: the whole batch.
		if b.done {
			b.mu.Unlock()
			return fail(errHandle{msg: "dshm_batch_acknowledge: the batch was released"})
		}
		var last []diaspora.Event
		seen := make([]bool, b.nparts)
		for k := len(b.evs) - 1; k >= 0 && len(last) < b.nparts; k-- {
			if p := b.partOf[k]; !seen[p] && b.evs[k].ID() != diaspora.NoMoreEvents {
				seen[p] = true
				last = append(last, b.evs[k])
			}
		}
		b.mu.Unlock()
		for _, ev := range last {
			if err := ev.Acknowledge(); err != nil {
				return fail(err)
			}
		}
		return C.DSHM_OK
	}
	ev, _, err := b.event(i, "dshm_batch_acknowledge")
	b.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	return failOr(ev.Acknowledge())
}
