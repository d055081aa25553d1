package driver

import (
	"unsafe"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/internal/metabytes"
)

// An in-place event is the event of a record whose data is read in place
// in the ring (or not read: metadata only) and whose metadata is the
// default serializer's JSON. It holds no pointer: it lies, with a copy of
// its metadata after it, in the room of an inPlaceBlock whose only pointer
// is the block's first word. At millions of events a second the consumer's
// allocations pace the garbage collector, and pointers are what it scans
// and what every store into them pays a write barrier for while it marks;
// a block of these costs it one word.
//
// The data is a []byte laid out in three words that are not a pointer to
// the collector: they point into the ring's mapping, never into the Go
// heap, so the collector has nothing to find there. What keeps an event's
// memory alive is what a user holds: the event, its Metadata's bytes or
// its DataView all point into the block.
type inPlaceEvent struct {
	id, end uint64
	off     uint32 // of the event in its block's room
	mdLen   uint32 // its metadata follows the event; 0: the metadata is {}
	// data, dataLen, dataCap: the data in the ring as a []byte header
	// (data 0: no data).
	data    uintptr
	dataLen int
	dataCap int
}

// inPlaceRoom makes an inPlaceBlock 16 KiB, a size class of its own.
const inPlaceRoom = 16<<10 - 8

// inPlaceBlock is where in-place events of one partition are carved.
type inPlaceBlock struct {
	cp   *consumerPartition
	room [inPlaceRoom]byte
}

const inPlaceSize = int(unsafe.Sizeof(inPlaceEvent{}))

var metadataOf = metabytes.Of.(func([]byte) diaspora.Metadata)

// newInPlace carves an event with room for mdLen bytes of metadata after
// it from the partition's block; c.mu is held.
func (cp *consumerPartition) newInPlace(mdLen int) *inPlaceEvent {
	need := inPlaceSize + (mdLen+7)&^7
	if cp.inPlace == nil || cp.inPlaceAt+need > inPlaceRoom {
		// new, then the one pointer: a composite literal would clear all
		// 16 KiB again through the write barrier's bulk path.
		b := new(inPlaceBlock)
		b.cp = cp
		cp.inPlace, cp.inPlaceAt = b, 0
	}
	e := (*inPlaceEvent)(unsafe.Pointer(&cp.inPlace.room[cp.inPlaceAt]))
	e.off = uint32(cp.inPlaceAt)
	cp.inPlaceAt += need
	return e
}

// inPlaceFits says whether an event of mdLen bytes of metadata can be an
// in-place event (larger metadata goes into a block of its own).
func inPlaceFits(mdLen int) bool { return inPlaceSize+mdLen <= inPlaceRoom/4 }

func (e *inPlaceEvent) block() *inPlaceBlock {
	return (*inPlaceBlock)(unsafe.Add(unsafe.Pointer(e), -int(e.off)-int(unsafe.Offsetof(inPlaceBlock{}.room))))
}

func (e *inPlaceEvent) metaBytes() []byte {
	if e.mdLen == 0 {
		return emptyMeta
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e), inPlaceSize)), e.mdLen)
}

func (e *inPlaceEvent) setData(d []byte) {
	if len(d) == 0 {
		return
	}
	e.data, e.dataLen, e.dataCap = uintptr(unsafe.Pointer(unsafe.SliceData(d))), len(d), len(d)
}

func (e *inPlaceEvent) Metadata() diaspora.Metadata { return metadataOf(e.metaBytes()) }

func (e *inPlaceEvent) Data() diaspora.DataView {
	if e.data == 0 {
		return nil
	}
	return unsafe.Slice((*[]byte)(unsafe.Pointer(&e.data)), 1)
}

func (e *inPlaceEvent) ID() diaspora.EventID { return e.id }

func (e *inPlaceEvent) Partition() diaspora.PartitionInfo {
	p := e.block().cp.part
	return p.topic.infos[p.index]
}

// PartitionIndex is as (*event).PartitionIndex.
func (e *inPlaceEvent) PartitionIndex() int { return e.block().cp.part.index }

func (e *inPlaceEvent) Acknowledge() error { return e.block().cp.acknowledge(e.id, e.end) }

// DataOnGoHeap is false: the data is the ring's.
func (e *inPlaceEvent) DataOnGoHeap() bool { return false }
