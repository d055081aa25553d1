package ring

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Batch is records built in the producer's own memory, laid out as they
// will lie in the ring, and written by WriteBatch with one claim, one copy
// and one commit: the Aeron way of appending, where a record costs its
// bytes and not an atomic operation. A Batch is reused across writes and
// does not allocate once grown; it is used by one goroutine at a time.
type Batch struct {
	buf    []byte
	sizes  []RecordSize
	mark   int    // start of the record begun last
	maxRec uint64 // the longest record's recLen (32 + metadata + data)
	// total is the ring bytes of the records in sizes: len(buf) unless
	// the batch was misused (a Begin left open, a Cancel after End, two
	// DropLasts), which WriteBatch then refuses.
	total int
}

var zeroHeader [RecHeaderSize + RecordAlign]byte

// batchCopied, when set (by tests), runs between a batch's copy and its
// commit: where a producer killed mid-batch stops.
var batchCopied func()

// Len returns the number of records in the batch.
func (b *Batch) Len() int { return len(b.sizes) }

// Bytes returns the ring bytes the batch takes.
func (b *Batch) Bytes() int { return len(b.buf) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() { b.buf, b.sizes, b.maxRec, b.total = b.buf[:0], b.sizes[:0], 0, 0 }

// Begin starts a record. Append the record's metadata and then its data to
// the returned slice, and pass the result to End (or call Cancel).
func (b *Batch) Begin() []byte {
	b.mark = len(b.buf)
	if cap(b.buf)-len(b.buf) >= RecHeaderSize {
		// Every byte of the header is written before the batch is copied
		// (End: the lengths; WriteBatch: the ID, the pid and the tag), so
		// reused room needs no clearing.
		b.buf = b.buf[:len(b.buf)+RecHeaderSize]
	} else {
		b.buf = append(b.buf, zeroHeader[:RecHeaderSize]...)
	}
	return b.buf
}

// End closes the record begun last: buf is Begin's slice with metaLen bytes
// of metadata, then the data, appended.
func (b *Batch) End(buf []byte, metaLen int) error {
	body := len(buf) - b.mark - RecHeaderSize
	if metaLen < 0 || body < metaLen || len(buf) < len(b.buf) {
		b.Cancel()
		return fmt.Errorf("ring: batch record of %d bytes cannot hold %d bytes of metadata", body, metaLen)
	}
	n := RecHeaderSize + body
	if pad := int(align16(uint64(n))) - n; pad > 0 {
		buf = append(buf, zeroHeader[:pad]...)
	}
	// What does not depend on where the batch lands is written now, in
	// memory the producer just touched; WriteBatch adds the IDs and tags.
	recLen := uint64(n)
	le := binary.LittleEndian
	le.PutUint64(buf[b.mark+RecOffWord1:], align16(recLen)|recLen<<32)
	le.PutUint32(buf[b.mark+RecOffMetaLen:], uint32(metaLen))
	b.buf = buf
	b.total += int(align16(recLen))
	b.maxRec = max(b.maxRec, recLen)
	b.sizes = append(b.sizes, RecordSize{Meta: metaLen, Data: body - metaLen})
	return nil
}

// Cancel drops the record begun last (before its End).
func (b *Batch) Cancel() { b.buf = b.buf[:b.mark] }

// DropLast drops the record ended last.
func (b *Batch) DropLast() {
	if len(b.sizes) > 0 {
		last := b.sizes[len(b.sizes)-1]
		b.sizes = b.sizes[:len(b.sizes)-1]
		b.buf = b.buf[:b.mark]
		b.total -= int(align16(uint64(RecHeaderSize + last.Meta + last.Data)))
		b.maxRec = 0
		for _, s := range b.sizes {
			b.maxRec = max(b.maxRec, uint64(RecHeaderSize+s.Meta+s.Data))
		}
	}
}

// WriteBatch writes the batch's records into the ring: one claim of the
// whole batch (records get consecutive IDs from id0), its headers filled in
// the batch's memory, one copy of everything but the first record's state
// words, and the commit's CAS on those. It waits for space like Claim.
// claimed, when not nil, is called with the last ID of the claim before
// the commit publishes it. The batch is left as it was: Reset it to build
// the next.
func (r *Ring) WriteBatch(b *Batch, timeout time.Duration, claimed func(lastID uint64)) (id0, end uint64, err error) {
	L := uint64(len(b.buf))
	if r.closed.Load() || len(b.sizes) == 0 || b.maxRec > uint64(r.MaxRecordSize()) || L > r.cap/2 {
		// End kept the sizes checked against each other; what the ring
		// takes is checked here, record by record only when it fails.
		if _, err := r.claimLen(b.sizes); err != nil {
			return 0, 0, err
		}
	}
	if b.total != len(b.buf) {
		return 0, 0, fmt.Errorf("ring: batch of %d bytes holds records of %d (a record begun and not ended, or dropped without its bytes)", len(b.buf), b.total)
	}
	pos, id, err := r.claimSpace(L, uint64(len(b.sizes)), timeout)
	if err != nil {
		return 0, 0, err
	}
	// The headers, as Claim.writeHeaders puts them in the ring, but in
	// our memory (End wrote the lengths): records 1..k-1 COMMITTED (nobody
	// reads past record 0 before it commits), record 0's state words left
	// to the CAS.
	le := binary.LittleEndian
	pid := r.self.PID
	buf := b.buf
	o := 0
	for i, s := range b.sizes {
		le.PutUint64(buf[o+RecOffEventID:], id+uint64(i))
		le.PutUint32(buf[o+RecOffPID:], pid)
		if i > 0 {
			le.PutUint64(buf[o+RecOffWord0:], (pos+uint64(o))|StateCommitted)
		}
		o += int(align16(uint64(RecHeaderSize + s.Meta + s.Data)))
	}
	if claimed != nil {
		claimed(id + uint64(len(b.sizes)) - 1)
	}
	off := int(pos & r.mask)
	copy(r.data[off+16:off+int(L)], buf[16:])
	if batchCopied != nil {
		batchCopied()
	}
	recLen0 := uint64(RecHeaderSize + b.sizes[0].Meta + b.sizes[0].Data)
	if !cas16(r.data, off, pos|StateClaimed, L|uint64(pid)<<32, pos|StateCommitted, L|recLen0<<32) {
		return 0, 0, fmt.Errorf("%w: commit at position %d in %s: a reader gave the claim up after the claim timeout %v, and the space may hold other events now",
			ErrAbandoned, pos, r.path, time.Duration(r.abandon.Load()))
	}
	r.wakeData()
	return id, pos + L, nil
}
