package ring

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// DefaultSpin is how long Next busy-polls before sleeping on the futex.
const DefaultSpin = 20 * time.Microsecond

// maxSleep caps one futex sleep of a reader, so that it rechecks the
// complete flag and stuck claims; wakeups do not depend on it.
const maxSleep = 100 * time.Millisecond

// Entry is one committed record. Meta and Data point into the mapping: they
// are valid until the reader releases a position past End (or the Ring is
// closed).
type Entry struct {
	ID         uint64
	Meta, Data []byte
	Pos, End   uint64
}

// Reader reads records in order. A Reader is used by one goroutine at a time.
type Reader struct {
	r       *Ring
	slot    int // -1 for a cursor
	so      int
	word    uint32 // the slot's state word while we hold it
	pos     uint64
	rel     uint64
	minID   uint64
	lastID  uint64 // ID of the last record read, valid if haveID
	haveID  bool
	spin    time.Duration
	closed  bool
	stuckAt uint64 // position we are waiting at, valid if stuck
	stuck   bool
	since   time.Time // when we started waiting at stuckAt
	deadAt  time.Time // when the claim's producer was first seen dead
	lastChk time.Time // last liveness check of the claim's producer
	pfEnd   uint64    // end of the last batch whose lines were touched
	sink    byte
}

// Attach takes a reader slot named name and returns a Reader positioned at
// the oldest record still in the ring. Dead slots are reclaimed when no slot
// is free.
func (r *Ring) Attach(name string) (*Reader, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	h := r.hdr
	slot, gen, err := r.takeSlot(name, 0, r.slots)
	if err != nil {
		return nil, err
	}
	so := r.slotOff(slot)
	hc, _ := load16(h, OffHeadCache)
	store64(h, so+SlotOffReadPos, hc)
	store64(h, so+SlotOffReleasePos, hc)
	store32(h, so+SlotOffState, gen|SlotActive)
	// Bump the epoch: a producer that computed its minimum without seeing
	// our slot loaded the old epoch and now fails to publish it. If one
	// published before the bump, we see its headCache here and move up.
	for {
		hc2, ep := atomicLoadPair(p64(h, OffHeadCache))
		if cas16(h, OffHeadCache, hc2, ep, hc2, ep+1) {
			if hc2 > hc {
				hc = hc2
				store64(h, so+SlotOffReadPos, hc)
				store64(h, so+SlotOffReleasePos, hc)
			}
			break
		}
	}
	return &Reader{r: r, slot: slot, so: so, word: gen | SlotActive, pos: hc, rel: hc, spin: DefaultSpin}, nil
}

// takeSlot claims a free slot in [from, to) (reclaiming dead ones when none
// is free) and writes our identity and name into it; the slot is left
// SlotClaiming.
func (r *Ring) takeSlot(name string, from, to int) (int, uint32, error) {
	h := r.hdr
	slot := -1
	var gen uint32
	for try := 0; try < 2 && slot < 0; try++ {
		for i := from; i < to; i++ {
			w := load32(h, r.slotOff(i)+SlotOffState)
			g := w&^slotStateMask + slotGenOne
			if w&slotStateMask == SlotFree && cas32(h, r.slotOff(i)+SlotOffState, w, g|SlotClaiming) {
				slot, gen = i, g
				break
			}
		}
		if slot < 0 && r.ReclaimDead() == 0 {
			break
		}
	}
	if slot < 0 {
		return -1, 0, fmt.Errorf("%w: all %d slots of %s are held by live processes", ErrNoSlot, to-from, r.path)
	}
	so := r.slotOff(slot)
	store32(h, so+SlotOffPID, r.self.PID)
	store64(h, so+SlotOffStart, r.self.Start)
	store64(h, so+SlotOffAttachedNano, uint64(time.Now().UnixNano()))
	store64(h, so+SlotOffReadPos, 0)
	store64(h, so+SlotOffReleasePos, 0)
	nb := h[so+SlotOffName : so+SlotOffName+SlotNameLen]
	clear(nb)
	copy(nb[:SlotNameLen-1], name)
	return slot, gen, nil
}

// ProducerSlot is a producer process's presence in a ring: it pins no
// space, but tools see a live producer (and refuse to delete its topic
// under it); a dead process's slot is reclaimed like a reader's.
type ProducerSlot struct {
	r      *Ring
	so     int
	word   uint32 // the slot's state word while we hold it
	closed bool
}

// AttachProducer takes a slot that says a producer named name of this
// process uses the ring.
func (r *Ring) AttachProducer(name string) (*ProducerSlot, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	slot, gen, err := r.takeSlot(name, r.slots, r.slots+ProducerSlots)
	if err != nil {
		return nil, err
	}
	so := r.slotOff(slot)
	store32(r.hdr, so+SlotOffState, gen|SlotProducer)
	return &ProducerSlot{r: r, so: so, word: gen | SlotProducer}, nil
}

// Close frees the producer's slot. Idempotent.
func (ps *ProducerSlot) Close() error {
	if ps.closed {
		return nil
	}
	ps.closed = true
	if !ps.r.closed.Load() && ps.r.slotProc(ps.so) == ps.r.self {
		ps.r.freeSlot(ps.so, ps.word)
	}
	return nil
}

// NewCursor returns a reader without a slot starting at pos: it pins no
// space (Release is a no-op), so its user must pin it otherwise (the
// archiver, through ArchivedPos on a durable ring).
func (r *Ring) NewCursor(pos uint64) *Reader {
	return &Reader{r: r, slot: -1, pos: pos, rel: pos, spin: DefaultSpin}
}

// Slot returns the reader's slot index, -1 for a cursor.
func (rd *Reader) Slot() int { return rd.slot }

// Position returns the position of the next record to read.
func (rd *Reader) Position() uint64 { return rd.pos }

// SetSpin sets how long Next busy-polls before sleeping (0: sleep at once).
func (rd *Reader) SetSpin(d time.Duration) { rd.spin = d }

// Release lets producers reuse the space before pos (clamped to the
// reader's position; only forward).
func (rd *Reader) Release(pos uint64) {
	if rd.slot < 0 || rd.closed {
		return
	}
	pos = min(pos, rd.pos)
	if pos <= rd.rel {
		return
	}
	rd.rel = pos
	store64(rd.r.hdr, rd.so+SlotOffReadPos, rd.pos)
	store64(rd.r.hdr, rd.so+SlotOffReleasePos, pos)
	rd.r.wakeSpace()
}

// needFresh is how recent a sleeping producer's record of what it waits
// for must be to count: waiters refresh it at every sleep (10 ms at most).
const needFresh = 200 * time.Millisecond

// BlocksProducers reports whether a producer is waiting for space that
// this reader pins: it has read everything, no other pin is lower, and a
// producer slept, recently, for a claim that cannot fit while this reader
// holds its space. held is the space it pins.
func (rd *Reader) BlocksProducers() (held uint64, blocks bool) {
	r := rd.r
	if rd.slot < 0 || rd.closed {
		return 0, false
	}
	need := load64(r.hdr, OffSpaceNeed)
	at := int64(load64(r.hdr, OffSpaceNeedAt))
	if need <= rd.rel+r.cap || time.Since(time.Unix(0, at)) > needFresh {
		return 0, false
	}
	tail := load64(r.hdr, OffTailPos)
	if rd.pos < tail || rd.rel >= tail {
		return 0, false
	}
	for i := 0; i < r.slots; i++ {
		so := r.slotOff(i)
		if so != rd.so && r.slotState(so) == SlotActive && load64(r.hdr, so+SlotOffReleasePos) < rd.rel {
			return 0, false
		}
	}
	if r.durable && load64(r.hdr, OffArchivedPos) < rd.rel {
		return 0, false
	}
	return tail - rd.rel, true
}

// Close frees the reader's slot.
func (rd *Reader) Close() error {
	if rd.closed {
		return nil
	}
	rd.closed = true
	if rd.slot >= 0 && !rd.r.closed.Load() && rd.r.slotProc(rd.so) == rd.r.self {
		rd.r.freeSlot(rd.so, rd.word)
		rd.r.wakeSpace()
	}
	return nil
}

// step results
const (
	stGot     = iota
	stEmpty   // nothing claimed at pos yet
	stPending // claimed, not committed (or header not yet written)
)

func (rd *Reader) corrupt(pos uint64, field string, v uint64, why string) error {
	return &CorruptError{Path: rd.r.path, Pos: pos, Field: field, Value: v, Why: why}
}

// step tries to read the record at rd.pos into *e, skipping padding. It
// turns stuck claims into padding when their time has come. It fills *e in
// place rather than returning an Entry: a returned struct is written field
// by field and read back by wide loads that cannot be forwarded from those
// stores, which cost more than the rest of a record's read.
func (rd *Reader) step(e *Entry) (int, error) {
	r := rd.r
	d := r.data
	for {
		pos := rd.pos
		if pos%RecordAlign != 0 || pos >= MaxPos {
			return 0, rd.corrupt(pos, "reader position", pos, "not 16-aligned or past 2^62")
		}
		off := pos & r.mask
		w0 := load64(d, int(off))
		if w0&^stateMask == pos && w0&stateMask != 0 {
			w1 := load64(d, int(off)+RecOffWord1)
			switch w0 & stateMask {
			case StateCommitted:
				recLen := w1 >> 32
				if recLen < RecHeaderSize || recLen > r.cap-off {
					return 0, rd.corrupt(pos, "recLen", recLen, fmt.Sprintf("want 32..%d", r.cap-off))
				}
				o := int(off)
				le := binary.LittleEndian
				id := le.Uint64(d[o+RecOffEventID:])
				ml := uint64(le.Uint32(d[o+RecOffMetaLen:]))
				if ml > recLen-RecHeaderSize {
					return 0, rd.corrupt(pos, "metaLen", ml, fmt.Sprintf("longer than recLen %d - 32", recLen))
				}
				// IDs rise by one from record to record, except past aborted
				// or abandoned claims; anything else must still be below the
				// tail's next ID, or the record is damaged. The tail is read
				// only then, so the common case costs no shared cache line.
				if !idFits(id, r.firstID, pos) {
					return 0, rd.corrupt(pos, "eventID", id, fmt.Sprintf("out of [firstID %d, firstID + position/32]", r.firstID))
				}
				if !rd.haveID || id != rd.lastID+1 {
					if (rd.haveID && id <= rd.lastID) || id >= load64(r.hdr, OffTailID) {
						return 0, rd.corrupt(pos, "eventID", id, fmt.Sprintf("not after the previous record's %d and below the tail's next ID", rd.lastID))
					}
				}
				rd.lastID, rd.haveID = id, true
				rd.pos = pos + align16(recLen)
				rd.stuck = false
				if cl := w1 & 0xffffffff; cl > 2*LineSize && pos >= rd.pfEnd && cl <= r.cap-off {
					rd.pfEnd = pos + cl // the first record of a batch: all of it is committed
					rd.sink += touchLines(d, o+LineSize, o+int(cl))
				}
				if id < rd.minID {
					continue
				}
				ms, ds, de := o+RecHeaderSize, o+RecHeaderSize+int(ml), o+int(recLen)
				e.ID, e.Meta, e.Data, e.Pos, e.End = id, d[ms:ds:ds], d[ds:de:de], pos, rd.pos
				return stGot, nil
			case StatePadding:
				cl := w1 & 0xffffffff
				if cl < RecordAlign || cl > r.cap-off || cl%RecordAlign != 0 {
					return 0, rd.corrupt(pos, "padding claimLen", cl, fmt.Sprintf("want a multiple of 16 in 16..%d", r.cap-off))
				}
				rd.pos = pos + cl
				rd.stuck = false
				continue
			case StateClaimed:
				cl := w1 & 0xffffffff
				if cl < RecHeaderSize || cl > r.cap-off || cl%RecordAlign != 0 {
					return 0, rd.corrupt(pos, "claimLen", cl, fmt.Sprintf("want a multiple of 16 in 32..%d", r.cap-off))
				}
				if rd.stuckClaimed(pos, w0, w1, cl) {
					continue
				}
				return stPending, nil
			default:
				return 0, rd.corrupt(pos, "record state", w0&stateMask, "want 1, 2 or 3")
			}
		}
		tail := load64(r.hdr, OffTailPos)
		if pos >= tail {
			rd.stuck = false
			if load32(r.hdr, OffDeleted) != 0 {
				return 0, r.deletedError()
			}
			if load32(r.hdr, OffComplete) != 0 {
				// re-check: a record may have been committed just before
				if load64(d, int(off)) != w0 {
					continue
				}
				return 0, ErrEndOfStream
			}
			return stEmpty, nil
		}
		if tail-pos > r.cap {
			return 0, fmt.Errorf("%w: reader at position %d of %s was overrun (tail %d)", ErrTooOld, pos, r.path, tail)
		}
		if rd.stuckUnwritten(pos, tail) {
			continue
		}
		return stPending, nil
	}
}

// markStuck starts or continues the wait at pos and returns how long it has
// lasted.
func (rd *Reader) markStuck(pos uint64, now time.Time) time.Duration {
	if !rd.stuck || rd.stuckAt != pos {
		rd.stuck, rd.stuckAt, rd.since = true, pos, now
		rd.deadAt, rd.lastChk = time.Time{}, time.Time{}
	}
	return now.Sub(rd.since)
}

// stuckClaimed handles a CLAIMED record at pos: it turns it into padding
// when its producer is dead (after deadGrace) or after the abandon timeout.
// It reports whether it did (or someone else changed the header).
func (rd *Reader) stuckClaimed(pos, w0, w1, cl uint64) bool {
	now := time.Now()
	waited := rd.markStuck(pos, now)
	give := waited >= time.Duration(rd.r.abandon.Load())
	if !give && now.Sub(rd.lastChk) >= deadGrace {
		rd.lastChk = now
		if !pidAlive(uint32(w1 >> 32)) {
			if rd.deadAt.IsZero() {
				rd.deadAt = now
			}
		} else {
			rd.deadAt = time.Time{}
		}
	}
	if !rd.deadAt.IsZero() && now.Sub(rd.deadAt) >= deadGrace {
		give = true
	}
	if !give {
		return false
	}
	off := int(pos & rd.r.mask)
	cas16(rd.r.data, off, w0, w1, pos|StatePadding, cl)
	rd.r.wakeData()
	return true
}

// stuckUnwritten handles a position below the tail whose header is not
// written yet. After the abandon timeout it stamps PADDING headers of 16
// bytes on every 16-byte granule from pos up to the first valid header (or
// the tail, or the lap boundary). Granule by granule, in ascending order and
// each with a CAS from the stale value: a producer whose record 0 starts at
// a stamped granule finds its CAS failing and reports ErrAbandoned, so no
// live claim can end up hidden inside padding. (One padding header over the
// whole gap could hide such a claim: see FORMAT.md.)
func (rd *Reader) stuckUnwritten(pos, tail uint64) bool {
	now := time.Now()
	// A producer takes nanoseconds from its tail CAS to its header CAS; a
	// longer claim timeout is for claims whose header says who holds them.
	if rd.markStuck(pos, now) < min(time.Duration(rd.r.abandon.Load()), DefaultAbandonTimeout) {
		return false
	}
	r := rd.r
	lapEnd := (pos | r.mask) + 1
	limit := min(tail, lapEnd)
	for p := pos; p < limit; {
		off := int(p & r.mask)
		w0, w1 := atomicLoadPair(p64(r.data, off))
		if w0&^stateMask == p && w0&stateMask != 0 {
			break
		}
		if cas16(r.data, off, w0, w1, p|StatePadding, RecordAlign) {
			p += RecordAlign
		}
	}
	r.wakeData()
	return true
}

// TryNext returns the next record if one is committed, without waiting.
func (rd *Reader) TryNext() (Entry, bool, error) {
	if rd.closed || rd.r.closed.Load() {
		return Entry{}, false, ErrClosed
	}
	var e Entry
	st, err := rd.step(&e)
	if err != nil {
		return Entry{}, false, err
	}
	return e, st == stGot, nil
}

// NextBatch fills dst with the records committed from the reader's
// position on, up to len(dst) of them, without waiting: every record of a
// batch a producer committed at once is there (one commit publishes the
// batch), and the tail is loaded only to find the end. It returns how
// many it read; an error (ErrEndOfStream once the ring is complete and all
// is read) comes only with 0 records.
func (rd *Reader) NextBatch(dst []Entry) (int, error) {
	if rd.closed || rd.r.closed.Load() {
		return 0, ErrClosed
	}
	n := 0
	for n < len(dst) {
		st, err := rd.step(&dst[n])
		if err != nil {
			if n > 0 {
				// The position did not move: the next call meets the
				// error (or the end of the stream) again, after these.
				return n, nil
			}
			return 0, err
		}
		if st != stGot {
			break
		}
		n++
	}
	return n, nil
}

// Next returns the next record, waiting at most timeout (timeout < 0: no
// limit): it polls for the spin time, then sleeps on the ring's futex.
// It returns ErrEndOfStream once the ring is complete and all is read.
func (rd *Reader) Next(timeout time.Duration) (Entry, error) {
	if rd.closed || rd.r.closed.Load() {
		return Entry{}, ErrClosed
	}
	var e Entry
	st, err := rd.step(&e)
	if err != nil || st == stGot {
		return e, err
	}
	return rd.nextSlow(timeout)
}

func (rd *Reader) nextSlow(timeout time.Duration) (Entry, error) {
	r := rd.r
	start := time.Now()
	var e Entry
	if rd.spin > 0 {
		for i := 1; ; i++ {
			st, err := rd.step(&e)
			if err != nil || st == stGot {
				return e, err
			}
			if i%64 == 0 {
				el := time.Since(start)
				if el >= rd.spin || (timeout >= 0 && el >= timeout) {
					break
				}
				if i%1024 == 0 {
					runtime.Gosched()
				}
			}
		}
	}
	seqp := p32(r.hdr, OffDataSeq)
	for {
		d := maxSleep
		if timeout >= 0 {
			rem := timeout - time.Since(start)
			if rem <= 0 {
				return Entry{}, fmt.Errorf("%w: no record at position %d of %s after %v", ErrTimeout, rd.pos, r.path, timeout)
			}
			d = min(d, rem)
		}
		if r.closed.Load() {
			return Entry{}, ErrClosed
		}
		// Dekker with wakeData: load the sequence, announce ourselves, then
		// re-check the record. A producer that commits after our re-check
		// sees dataWaiters > 0 (its CAS and our increment are seq-cst) and
		// bumps the sequence, so FutexWait on the old value returns at once.
		seq := load32(r.hdr, OffDataSeq)
		add32(r.hdr, OffDataWaiters, 1)
		st, err := rd.step(&e)
		if err == nil && st != stGot {
			if st == stPending {
				d = min(d, deadGrace) // stuck claims need rechecking
			}
			if rd.slot >= 0 {
				store64(r.hdr, rd.so+SlotOffReadPos, rd.pos)
			}
			shm.FutexWait(seqp, seq, d)
		}
		add32(r.hdr, OffDataWaiters, -1)
		if err != nil || st == stGot {
			return e, err
		}
	}
}

// SeekID moves the reader to the first record with ID >= id. It returns
// ErrTooOld if id is older than the oldest record this reader still holds
// (its release position).
func (rd *Reader) SeekID(id uint64) error {
	if rd.closed || rd.r.closed.Load() {
		return ErrClosed
	}
	r := rd.r
	rd.pos = rd.rel
	rd.minID = 0
	rd.haveID = false
	first := true
	for {
		save, saveID, saveHave := rd.pos, rd.lastID, rd.haveID
		var e Entry
		st, err := rd.step(&e)
		if err == ErrEndOfStream {
			err, st = nil, stEmpty
		}
		if err != nil {
			rd.pos, rd.lastID, rd.haveID = save, saveID, saveHave
			return err
		}
		if st != stGot {
			rd.pos, rd.lastID, rd.haveID = save, saveID, saveHave
			rd.minID = id
			if first && st == stEmpty {
				tp, tid := load16(r.hdr, OffTailPos)
				if save >= tp && id < tid {
					return fmt.Errorf("%w: ID %d, next to be written is %d in %s", ErrTooOld, id, tid, r.path)
				}
			}
			return nil
		}
		if first && e.ID > id {
			rd.pos, rd.lastID, rd.haveID = save, saveID, saveHave
			return fmt.Errorf("%w: ID %d, oldest held is %d in %s", ErrTooOld, id, e.ID, r.path)
		}
		first = false
		if e.ID >= id {
			rd.pos, rd.lastID, rd.haveID = save, saveID, saveHave
			rd.minID = id
			return nil
		}
	}
}
