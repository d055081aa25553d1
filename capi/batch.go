package main

/*
#include <stdlib.h>
#include "internal.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

// cBatch is the events of one dshm_batch_pull under one handle: a pull of
// many small events costs no handle, no Go object and no map entry per
// event, which is what a caller in another language pays most for
// (dshm_consumer_pull_batch makes all three).
//
// Its only memory per event is the events themselves: at millions of
// events a second, what a pull allocates paces the garbage collector.
//
// A batch is of events, or, when the driver reads records in place
// (driver.RecordPuller), of records: then not even an Event per event is
// made; what each record is lies in the caller's infos and in recs.
type cBatch struct {
	c      *cConsumer
	evs    []diaspora.Event
	recs   []batchRecord
	rp     driver.RecordPuller // the consumer's, for a batch of records
	partOf []uint32            // for each event, which of the batch's nparts partitions
	nparts int
	arena  unsafe.Pointer  // C memory: each event's metadata NUL, and each partition's information NUL once
	pinner *runtime.Pinner // nil unless some data is Go memory (read back from the log)
	owned  bool            // data from mallocCopy, freed with the batch
	mu     sync.Mutex      // against a release while another thread acknowledges
	done   bool            // released

	// While records are pulled into the batch (driver.RecordSink):
	infos    []C.dshm_event_info // the caller's
	chunks   []unsafe.Pointer    // C memory of metadata and partitions' information
	cur      unsafe.Pointer      // the last chunk: room from at to size
	at, size int
	mdLen    int       // of the last MetadataRoom
	slotText []*C.char // per slot of the consumer, its information in the batch
}

// batchRecord is what the library keeps of a record of a batch: the
// caller's infos are the caller's to change, so acknowledgements and
// segments are served from this (pointer-free: nothing for the collector).
type batchRecord struct {
	id, end uint64
	slot    int
	// data, size, size2: the data as a []byte header (data 0: none). It
	// points into the ring's mapping, never the Go heap: three words the
	// collector has no reason to follow.
	data        uintptr
	size, size2 int
}

// view is the record's data.
func (r *batchRecord) view() diaspora.DataView {
	if r.data == 0 {
		return nil
	}
	return unsafe.Slice((*[]byte)(unsafe.Pointer(&r.data)), 1)
}

// batchChunk is the C memory a batch of records takes at a time for its
// metadata: a batch of small events takes one.
const batchChunk = 32 << 10

// MetadataRoom is a driver.RecordSink's: room in C memory, with a NUL
// after it.
func (b *cBatch) MetadataRoom(n int) []byte {
	// The partition's information may need room too: reserved now, so
	// that Add never runs out.
	if !b.reserve(n + 1 + b.c.maxInfo + 1) {
		return nil
	}
	b.mdLen = n
	return unsafe.Slice((*byte)(unsafe.Add(b.cur, b.at)), n)
}

// reserve makes n bytes of room at b.cur+b.at, or says it could not.
func (b *cBatch) reserve(n int) bool {
	if b.size-b.at >= n {
		return true
	}
	size := max(n, batchChunk)
	p := C.malloc(C.size_t(size))
	if p == nil {
		return false
	}
	b.chunks = append(b.chunks, p)
	b.cur, b.at, b.size = p, 0, size
	return true
}

// Add is a driver.RecordSink's: the record's info, and what the batch
// keeps of it.
func (b *cBatch) Add(r driver.Record) {
	md := unsafe.Add(b.cur, b.at)
	*(*byte)(unsafe.Add(md, b.mdLen)) = 0
	b.at += b.mdLen + 1
	out := &b.infos[len(b.recs)]
	out.id = C.uint64_t(r.ID)
	out.partition = C.size_t(b.c.slotIndex[r.Slot])
	out.partition_info = b.partitionText(r.Slot)
	out.metadata = (*C.char)(md)
	out.metadata_size = C.size_t(b.mdLen)
	rec := batchRecord{id: r.ID, end: r.End, slot: r.Slot}
	if len(r.Data) > 0 {
		rec.data, rec.size, rec.size2 = uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))), len(r.Data), len(r.Data)
		out.data_size = C.size_t(len(r.Data))
		out.num_segments = 1
		out.first = C.dshm_segment{data: unsafe.Pointer(unsafe.SliceData(r.Data)), size: C.size_t(len(r.Data))}
	} else {
		out.data_size, out.num_segments, out.first = 0, 0, C.dshm_segment{}
	}
	b.recs = append(b.recs, rec)
}

// partitionText is the information of the consumer's partition slot,
// NUL-terminated in the batch's memory (once per partition and batch).
func (b *cBatch) partitionText(slot int) *C.char {
	if slot >= len(b.slotText) {
		b.slotText = append(b.slotText, make([]*C.char, slot+1-len(b.slotText))...)
	}
	if p := b.slotText[slot]; p != nil {
		return p
	}
	info := b.c.slotInfo[slot] // MetadataRoom reserved room for it
	p := unsafe.Add(b.cur, b.at)
	copy(unsafe.Slice((*byte)(p), len(info)), info)
	*(*byte)(unsafe.Add(p, len(info))) = 0
	b.at += len(info) + 1
	b.slotText[slot] = (*C.char)(p)
	b.nparts++
	return (*C.char)(p)
}

// pullRecords pulls up to len(infos) records into a new batch. It returns
// nil and no error when the next events are to be pulled as events (the
// driver has no records, or says the next are not).
func (c *cConsumer) pullRecords(ms C.int64_t, infos []C.dshm_event_info) (*cBatch, error) {
	rp, ok := c.c.Interface().(driver.RecordPuller)
	if !ok {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deferred != nil || c.pending != nil {
		return nil, nil
	}
	if c.slotIndex == nil {
		if err := c.loadSlots(rp); err != nil {
			return nil, err
		}
	}
	b := &cBatch{c: c, rp: rp, infos: infos, recs: c.takeRecords(len(infos))}
	n, err := rp.PullRecords(b, len(infos), timeout(ms))
	b.infos = nil
	if n == 0 {
		b.free()
		if errors.Is(err, driver.ErrNotRecords) {
			err = nil
		}
		return nil, err
	}
	return b, nil
}

// takeRecords returns room for n records, a released batch's when one is
// spare: a new slice per batch is memory the cache has not seen (a
// profile put half the cost of a record in its first store).
func (c *cConsumer) takeRecords(n int) []batchRecord {
	c.recMu.Lock()
	for len(c.recSpare) > 0 {
		k := len(c.recSpare) - 1
		r := c.recSpare[k]
		c.recSpare = c.recSpare[:k]
		if cap(r) >= n {
			c.recMu.Unlock()
			return r[:0]
		}
	}
	c.recMu.Unlock()
	return make([]batchRecord, 0, n)
}

// giveRecords keeps a released batch's records for the next batches (a
// few: batches held at once are what the caller holds).
func (c *cConsumer) giveRecords(r []batchRecord) {
	c.recMu.Lock()
	if len(c.recSpare) < 4 {
		c.recSpare = append(c.recSpare, r)
	}
	c.recMu.Unlock()
}

// loadSlots asks the driver which partition each of its partition slots
// is; c.mu is held.
func (c *cConsumer) loadSlots(rp driver.RecordPuller) error {
	var idx []int
	var infos [][]byte
	for slot := 0; ; slot++ {
		i, info, err := rp.RecordPartition(slot)
		if err != nil {
			if slot == 0 {
				return err
			}
			break
		}
		idx, infos = append(idx, i), append(infos, info)
	}
	c.slotIndex, c.slotInfo = idx, infos
	for _, info := range infos {
		c.maxInfo = max(c.maxInfo, len(info))
	}
	return nil
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
	for _, p := range b.chunks {
		C.free(p)
	}
	if b.recs != nil {
		b.c.giveRecords(b.recs)
	}
	b.chunks, b.cur, b.recs = nil, nil, nil
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

// count is how many events the batch has.
func (b *cBatch) count() int {
	if b.rp != nil {
		return len(b.recs)
	}
	return len(b.evs)
}

// event returns event i of the batch, under b.mu.
func (b *cBatch) event(i C.size_t, call string) (diaspora.Event, diaspora.DataView, error) {
	if b.done {
		return diaspora.Event{}, nil, errHandle{msg: call + ": the batch was released"}
	}
	if uint64(i) >= uint64(b.count()) {
		return diaspora.Event{}, nil, invalid("%s: event %d of a batch of %d", call, uint64(i), b.count())
	}
	if b.rp != nil {
		return diaspora.Event{}, b.recs[i].view(), nil
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
	if b, err := c.pullRecords(ms, unsafe.Slice(infos, int(max))); err != nil || b != nil {
		if err != nil {
			return fail(err)
		}
		*out = C.dshm_batch(newHandle(b))
		*n = C.size_t(len(b.recs))
		return C.DSHM_OK
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

// acknowledgeRecords is dshm_batch_acknowledge for a batch of records;
// b.mu is held, and unlocked here.
func (b *cBatch) acknowledgeRecords(i C.size_t) C.int {
	if b.done {
		b.mu.Unlock()
		return fail(errHandle{msg: "dshm_batch_acknowledge: the batch was released"})
	}
	if i != ^C.size_t(0) {
		if uint64(i) >= uint64(len(b.recs)) {
			b.mu.Unlock()
			return fail(invalid("dshm_batch_acknowledge: event %d of a batch of %d", uint64(i), len(b.recs)))
		}
		r := b.recs[i]
		b.mu.Unlock()
		return failOr(b.rp.AcknowledgeRecord(r.slot, r.id, r.end))
	}
	// The last record of each partition: the whole batch.
	var last []batchRecord
	seen := make([]bool, len(b.slotText))
	for k := len(b.recs) - 1; k >= 0 && len(last) < b.nparts; k-- {
		if r := b.recs[k]; !seen[r.slot] {
			seen[r.slot] = true
			last = append(last, r)
		}
	}
	b.mu.Unlock()
	for _, r := range last {
		if err := b.rp.AcknowledgeRecord(r.slot, r.id, r.end); err != nil {
			return fail(err)
		}
	}
	return C.DSHM_OK
}

//export dshmgo_batch_spans
func dshmgo_batch_spans(h C.dshm_batch, n C.size_t, base, starts, ends *C.uint64_t) (st C.int) {
	defer recoverPanic(&st)
	b, err := lookup[*cBatch](h, "batch")
	if err != nil {
		return fail(err)
	}
	if base == nil || (n > 0 && (starts == nil || ends == nil)) {
		return fail(invalid("dshm_batch_spans: base, starts or ends is NULL"))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return fail(errHandle{msg: "dshm_batch_spans: the batch was released"})
	}
	if count := b.count(); uint64(n) > uint64(count) {
		return fail(invalid("dshm_batch_spans: %d events of a batch of %d", uint64(n), count))
	}
	// One piece each, or the caller makes views another way.
	piece := func(i int) (uintptr, int, error) {
		_, d, err := b.event(C.size_t(i), "dshm_batch_spans")
		if err != nil {
			return 0, 0, err
		}
		if first, k := segmentsOf(d); k == 1 {
			return uintptr(unsafe.Pointer(unsafe.SliceData(first))), len(first), nil
		}
		return 0, 0, fmt.Errorf("diaspora_shm: dshm_batch_spans: %w: event %d of the batch is not one segment of data", errRange, i)
	}
	lo := ^uintptr(0)
	for i := range int(n) {
		p, _, err := piece(i)
		if err != nil {
			return fail(err)
		}
		lo = min(lo, p)
	}
	if n == 0 {
		lo = 0
	}
	*base = C.uint64_t(lo)
	ss, es := unsafe.Slice(starts, int(n)), unsafe.Slice(ends, int(n))
	for i := range int(n) {
		p, size, _ := piece(i)
		ss[i], es[i] = C.uint64_t(p-lo), C.uint64_t(p-lo+uintptr(size))
	}
	return C.DSHM_OK
}

//export dshmgo_batch_acknowledge
func dshmgo_batch_acknowledge(h C.dshm_batch, i C.size_t) (st C.int) {
	defer recoverPanic(&st)
	b, err := lookup[*cBatch](h, "batch")
	if err != nil {
		return fail(err)
	}
	b.mu.Lock()
	if b.rp != nil {
		return b.acknowledgeRecords(i)
	}
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
