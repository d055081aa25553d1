package driver

import (
	"errors"
	"fmt"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
)

// Record is a ring record that PullRecords hands to a RecordSink instead
// of making an event of it: for a caller that copies what it needs out of
// each record at once (the C library, for which one Event per event is
// most of the cost of a pull).
type Record struct {
	// Slot is which of the consumer's partitions the record is of: what
	// AcknowledgeRecord and RecordPartition take.
	Slot int
	// ID is the event's ID; End is where its record ends in the ring,
	// for AcknowledgeRecord.
	ID, End uint64
	// Data is the event's data in the ring's shared memory (nil when the
	// consumer selects none). For a zero-copy consumer it stays valid, and
	// unchanged by producers, until the event is acknowledged; after the
	// consumer closes it still points at mapped memory, but producers may
	// have written other events over it.
	Data []byte
}

// A RecordSink receives the records of a PullRecords.
type RecordSink interface {
	// MetadataRoom returns n bytes of the sink's memory (not the Go
	// heap's, or pinned) that the next record's metadata is copied into,
	// or nil when it has none (the record is left for the next pull);
	// the copy is checked there, so that what is checked is what the sink
	// keeps (the ring's bytes are another process's to change). The room
	// is the sink's once Add is called; without Add (the metadata is
	// damaged), the next MetadataRoom may return it again.
	MetadataRoom(n int) []byte
	// Add takes the record whose metadata was copied into the last room.
	Add(r Record)
}

// RecordPuller is implemented by the consumers of this driver (through
// diaspora.Consumer.Interface) whose events are records read in place:
// consumers of the default serializer with no allocator, selecting all
// data or none.
type RecordPuller interface {
	// PullRecords hands up to max records to sink, waiting up to timeout
	// for the first (timeout < 0: no limit), and returns how many it
	// handed. It returns ErrNotRecords, having handed none, when the next
	// event must be pulled as an Event (PullBatch or Pull): the end of the
	// stream, events read back from the durable log, an event whose
	// delivery failed before, or events a Pull or PullBatch left. A
	// damaged record met after others were handed stays next: the pull
	// after this one returns ErrNotRecords, and an Event pull the error.
	PullRecords(sink RecordSink, max int, timeout time.Duration) (int, error)
	// AcknowledgeRecord acknowledges the record of ID id ending at end of
	// the consumer's partition slot, as Event.Acknowledge does: the
	// arguments are a Record's from this consumer.
	AcknowledgeRecord(slot int, id, end uint64) error
	// RecordPartition says which partition of the topic slot is: its
	// index, and its information (the JSON of Event.Partition).
	RecordPartition(slot int) (index int, info []byte, err error)
}

// ErrNotRecords is what PullRecords returns when the next event is to be
// pulled as an Event.
var ErrNotRecords = errors.New("the next event is not a record read in place")

var _ RecordPuller = (*consumer)(nil)

// errNoneReady ends a PullRecords pass that found nothing, without the
// message of a timeout.
var errNoneReady = errors.New("no record ready")

func (c *consumer) PullRecords(sink RecordSink, max int, timeout time.Duration) (int, error) {
	if sink == nil || max <= 0 {
		return 0, fmt.Errorf("%w: %s: PullRecords into no sink or no room (max %d)", diaspora.ErrInvalidArgument, c, max)
	}
	if !c.inPlace {
		return 0, ErrNotRecords
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peeked || c.readyAt < len(c.ready) || c.rawAt < len(c.raw) || c.readyErr != nil {
		return 0, ErrNotRecords
	}
	for _, cp := range c.parts {
		if !cp.ended && (cp.redo.ok || cp.log != nil) {
			return 0, ErrNotRecords
		}
	}
	c.sink, c.sinkN, c.sinkMax = sink, 0, max
	defer func() { c.sink = nil }()
	_, err := c.nextLocked(timeout)
	if c.sinkN == 0 {
		if err == nil {
			err = ErrNotRecords // the end of the stream: an event
		}
		return 0, err
	}
	// What the sink holds is handed out whatever came after it (the
	// records after it are raw: the next pull meets the error again as it
	// builds them). A pass reads
	// what it finds in one partition (perFill at most): more passes that
	// need no wait fill the sink.
	for err == nil && c.sinkN < max && c.rawAt == len(c.raw) {
		before := c.sinkN
		if _, err := c.nextLocked(0); err != nil || c.sinkN == before {
			break // an error is met again by the next pull
		}
	}
	return c.sinkN, nil
}

// fillSink hands the records of a pass (those of cp from the wanted ID
// on) to the sink. The reader is past all of them: until each is handed,
// it is raw, so that a record whose metadata is damaged, a sink out of
// room or a fault (a truncated ring) leaves it and those after it to the
// next pull, which builds them as events (and meets the error). c.mu is
// held.
func (c *consumer) fillSink(cp *consumerPartition, entries []ring.Entry) (bool, error) {
	c.raw, c.rawAt, c.rawCP = entries, 0, cp
	for i := range entries {
		c.rawAt = i
		if err := cp.sinkEntry(&entries[i]); err != nil {
			if i == 0 {
				return false, fmt.Errorf("consumer %q of %s: event %d: %w (the event is not skipped: the next Pull delivers it again)", c.name, cp.part, entries[i].ID, err)
			}
			return true, nil
		}
	}
	c.raw, c.rawAt, c.rawCP = nil, 0, nil
	return true, nil
}

// errSinkFull is a sink's MetadataRoom giving no room (out of memory).
var errSinkFull = errors.New("the record sink has no room for the metadata")

// sinkEntry copies a record's metadata into the sink, checks it there,
// and hands the record over; c.mu is held.
func (cp *consumerPartition) sinkEntry(e *ring.Entry) error {
	c := cp.c
	room := c.sink.MetadataRoom(len(e.Meta))
	if len(room) != len(e.Meta) {
		return fmt.Errorf("%w (%d bytes)", errSinkFull, len(e.Meta))
	}
	copy(room, e.Meta)
	if !isEmptyObject(room) {
		if _, err := diaspora.MetadataOfShape(room); err != nil {
			return err
		}
	}
	r := Record{Slot: cp.slot, ID: e.ID, End: e.End}
	if c.sel != nil && len(e.Data) > 0 {
		r.Data = e.Data[:len(e.Data):len(e.Data)]
	}
	c.sink.Add(r)
	c.sinkN++
	cp.want = e.ID + 1
	if !c.zeroCopy {
		cp.relAt = e.End
	}
	return nil
}

func (c *consumer) AcknowledgeRecord(slot int, id, end uint64) error {
	if slot < 0 || slot >= len(c.slots) {
		return fmt.Errorf("%w: %s: AcknowledgeRecord of partition slot %d of %d", diaspora.ErrInvalidArgument, c, slot, len(c.slots))
	}
	return c.slots[slot].acknowledge(id, end)
}

func (c *consumer) RecordPartition(slot int) (int, []byte, error) {
	if slot < 0 || slot >= len(c.slots) {
		return 0, nil, fmt.Errorf("%w: %s: RecordPartition of partition slot %d of %d", diaspora.ErrInvalidArgument, c, slot, len(c.slots))
	}
	p := c.slots[slot].part
	return p.index, p.topic.infos[p.index].Metadata.Bytes(), nil
}
