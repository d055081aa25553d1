package ring

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// RecordSize is the size of one record of a batch to claim.
type RecordSize struct{ Meta, Data int }

// Claim is space claimed for a batch of records, to be filled through Meta
// and Data and then published with Commit (or dropped with Abort). A Claim
// can be reused for many Claim calls; reused, it does not allocate.
type Claim struct {
	r    *Ring
	pos  uint64 // position of record 0
	end  uint64 // position just past the claim
	id0  uint64
	recs []claimRec
	one  [1]claimRec // backs recs for a claim of one record: no allocation
	done bool
}

type claimRec struct {
	off        int // offset of the record in the data region
	meta, data int
}

// Claim reserves space for len(sizes) records, waiting at most timeout for
// readers (or the archiver) to free space (timeout < 0: no limit). Records
// get consecutive IDs. On ErrFull the message names what holds the space.
func (r *Ring) Claim(c *Claim, sizes []RecordSize, timeout time.Duration) error {
	L, err := r.claimLen(sizes)
	if err != nil {
		return err
	}
	pos, id, err := r.claimSpace(L, uint64(len(sizes)), timeout)
	if err != nil {
		return err
	}
	off0 := int(pos & r.mask)
	c.r, c.pos, c.end, c.id0, c.done = r, pos, pos+L, id, false
	c.recs = c.recs[:0]
	if cap(c.recs) < len(sizes) && len(sizes) <= len(c.one) {
		c.recs = c.one[:0]
	}
	o := off0
	for _, s := range sizes {
		c.recs = append(c.recs, claimRec{off: o, meta: s.Meta, data: s.Data})
		o += int(align16(RecHeaderSize + uint64(s.Meta) + uint64(s.Data)))
	}
	c.writeHeaders()
	return nil
}

// claimLen checks the sizes of a batch and returns the bytes it takes.
func (r *Ring) claimLen(sizes []RecordSize) (uint64, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if len(sizes) == 0 {
		return 0, fmt.Errorf("ring: claim of no records in %s", r.path)
	}
	var L uint64
	maxRec := uint64(r.MaxRecordSize())
	for i, s := range sizes {
		if s.Meta < 0 || s.Data < 0 || uint64(s.Meta) > maxRec || uint64(s.Data) > maxRec ||
			RecHeaderSize+uint64(s.Meta)+uint64(s.Data) > maxRec {
			return 0, fmt.Errorf("%w: record %d of %d: 32+meta %d+data %d > %d bytes (capacity/2) in %s",
				ErrTooLarge, i, len(sizes), s.Meta, s.Data, maxRec, r.path)
		}
		L += align16(RecHeaderSize + uint64(s.Meta) + uint64(s.Data))
	}
	if L > r.cap/2 {
		return 0, fmt.Errorf("%w: batch of %d records totals %d bytes > %d (capacity/2) in %s",
			ErrTooLarge, len(sizes), L, r.cap/2, r.path)
	}
	return L, nil
}

// claimSpace wins L bytes and k IDs on the tail (padding to the lap
// boundary first when the claim would cross it) and marks the claim's
// first header CLAIMED. It returns the claim's position and first ID.
func (r *Ring) claimSpace(L, k uint64, timeout time.Duration) (pos, id uint64, err error) {
	h := r.hdr
	var w spaceWait
	for {
		// One read-mostly line holds both flags: written once, it stays
		// in every reader's cache.
		switch {
		case load32(h, OffDeleted) != 0:
			return 0, 0, r.deletedError()
		case load32(h, OffComplete) != 0:
			return 0, 0, fmt.Errorf("%w: no event may follow the end of the stream in %s", ErrComplete, r.path)
		}
		pos, id = atomicLoadPair(p64(h, OffTailPos))
		if pos%RecordAlign != 0 || pos >= MaxPos {
			return 0, 0, &CorruptError{Path: r.path, Pos: OffTailPos, Field: "tailPos", Value: pos, Why: "not 16-aligned or past 2^62"}
		}
		if !idFits(id, r.firstID, pos) {
			return 0, 0, &CorruptError{Path: r.path, Pos: OffTailID, Field: "tailID", Value: id,
				Why: fmt.Sprintf("more IDs than records of 32 bytes fit below position %d since firstID %d", pos, r.firstID)}
		}
		off := pos & r.mask
		end := pos + L
		pad := off+L > r.cap
		if pad {
			end = pos + (r.cap - off) // fill to the lap boundary first
		}
		if end > load64(h, OffHeadCache)+r.cap {
			if head := r.refreshHead(false); end > head+r.cap {
				if err := r.waitSpace(&w, end, timeout); err != nil {
					return 0, 0, err
				}
				continue
			}
		}
		if pad {
			if cas16(h, OffTailPos, pos, id, end, id) {
				r.writePadding(pos, end-pos)
			}
			continue
		}
		if !cas16(h, OffTailPos, pos, id, end, id+k) {
			continue
		}
		if err := r.publishClaimed(pos, L); err != nil {
			return 0, 0, err
		}
		return pos, id, nil
	}
}

// publishClaimed turns the stale header at pos, the start of a claim of L
// bytes won on the tail, into CLAIMED with our pid in word1, unless a reader
// already stamped it (the header was not written within the abandon
// timeout): then the claim is lost and ErrAbandoned says so.
func (r *Ring) publishClaimed(pos, L uint64) error {
	off := int(pos & r.mask)
	w0, w1 := atomicLoadPair(p64(r.data, off))
	if (w0&^stateMask == pos && w0&stateMask != 0) ||
		!cas16(r.data, off, w0, w1, pos|StateClaimed, L|uint64(r.self.PID)<<32) {
		return fmt.Errorf("%w: claim at position %d in %s (header not written in time)", ErrAbandoned, pos, r.path)
	}
	return nil
}

// idFits checks the invariant that bounds every ID by its position: each ID
// takes a record of at least RecHeaderSize bytes (aborted and abandoned
// claims too), and positions start at 0 with firstID, so the record at pos
// has an ID in [firstID, firstID+pos/RecHeaderSize].
func idFits(id, firstID, pos uint64) bool {
	return id >= firstID && id-firstID <= pos/RecHeaderSize
}

// writePadding turns the claim [pos, pos+n) into padding, unless a reader
// already did (a valid tag is there).
func (r *Ring) writePadding(pos, n uint64) {
	off := int(pos & r.mask)
	w0, w1 := atomicLoadPair(p64(r.data, off))
	if w0&^stateMask == pos && w0&stateMask != 0 {
		return
	}
	cas16(r.data, off, w0, w1, pos|StatePadding, n)
	r.wakeData()
}

// spaceWait is the state of one Claim call waiting for space.
type spaceWait struct {
	started   bool
	deadline  time.Time
	lastLive  time.Time
	spinUntil time.Time
	unlimited bool
}

// spaceSpin is how long a producer polls for space before sleeping.
const spaceSpin = 50 * time.Microsecond

// spinPause burns a few cycles without touching shared memory.
//
//go:noinline
func spinPause() {}

// waitSpace sleeps until space up to end may be free, or fails with ErrFull
// at the deadline. Every liveTTL it checks the liveness of the slots.
func (r *Ring) waitSpace(w *spaceWait, end uint64, timeout time.Duration) error {
	now := time.Now()
	if !w.started {
		w.started, w.lastLive, w.unlimited = true, now, timeout < 0
		w.deadline = now.Add(timeout)
		w.spinUntil = now.Add(spaceSpin)
	}
	if now.Before(w.spinUntil) && (w.unlimited || now.Before(w.deadline)) {
		// Space usually frees within microseconds; a futex round trip costs
		// tens of them here. Poll (the caller re-checks) before sleeping.
		for range 64 {
			spinPause()
		}
		runtime.Gosched()
		return nil
	}
	if now.Sub(w.lastLive) >= liveTTL {
		w.lastLive = now
		if end <= r.refreshHead(true)+r.cap {
			return nil
		}
	}
	d := 10 * time.Millisecond
	if !w.unlimited {
		rem := w.deadline.Sub(now)
		if rem <= 0 {
			r.refreshHead(true)
			return r.fullError(end)
		}
		d = min(d, rem)
	}
	if r.closed.Load() {
		return ErrClosed
	}
	if r.Deleted() {
		return r.deletedError()
	}
	// Dekker with Release/SetArchived: we publish spaceWaiters then re-read
	// the release positions; they store a release position then read
	// spaceWaiters. All seq-cst, so one of us sees the other.
	seq := load32(r.hdr, OffSpaceSeq)
	add32(r.hdr, OffSpaceWaiters, 1)
	if end > r.refreshHead(false)+r.cap {
		// Say what we wait for, for readers that may be the cause
		// (Reader.BlocksProducers): a waiter killed here leaves a
		// record that goes stale, where spaceWaiters would stay counted.
		store64(r.hdr, OffSpaceNeed, end)
		store64(r.hdr, OffSpaceNeedAt, uint64(time.Now().UnixNano()))
		shm.FutexWait(p32(r.hdr, OffSpaceSeq), seq, d)
	}
	add32(r.hdr, OffSpaceWaiters, -1)
	return nil
}

// fullError names what holds the space that a claim up to end needs.
func (r *Ring) fullError(end uint64) error {
	tail := load64(r.hdr, OffTailPos)
	need := end - r.cap
	who := "nothing (space was freed just now)"
	best := ^uint64(0)
	for i := 0; i < r.slots; i++ {
		so := r.slotOff(i)
		if r.slotState(so) != SlotActive {
			continue
		}
		if rp := load64(r.hdr, so+SlotOffReleasePos); rp < need && rp < best {
			best = rp
			p := r.slotProc(so)
			who = fmt.Sprintf("reader slot %d %q pid %d pins %d bytes (release position %d)",
				i, r.slotName(so), p.PID, tail-rp, rp)
		}
	}
	if r.durable {
		if ap := r.ArchivedPos(); ap < need && ap < best {
			who = fmt.Sprintf("archiver (pid %d) pins %d bytes (archived position %d)",
				load32(r.hdr, OffArchiverPID), tail-ap, ap)
		}
	}
	return fmt.Errorf("%w: %s: claim up to position %d waits for %s", ErrFull, r.path, end, who)
}

// refreshHead recomputes the lowest pinned position (release positions of
// active slots, archivedPos when durable, else the tail) and publishes it in
// headCache with a CAS-max on the (headCache, headEpoch) pair. If an Attach
// bumped the epoch since we loaded it, our minimum may have missed that slot
// and is not published. With checkLive, slots of dead processes are freed.
func (r *Ring) refreshHead(checkLive bool) uint64 {
	h := r.hdr
	hc, ep := load16(h, OffHeadCache)
	m := ^uint64(0)
	for i := 0; i < r.slots; i++ {
		so := r.slotOff(i)
		w := load32(h, so+SlotOffState)
		if w&slotStateMask != SlotActive {
			continue
		}
		if checkLive && !procAlive(r.slotProc(so)) {
			r.freeSlot(so, w)
			continue
		}
		m = min(m, load64(h, so+SlotOffReleasePos))
	}
	if r.durable {
		m = min(m, load64(h, OffArchivedPos))
	}
	tail := load64(h, OffTailPos)
	if m == ^uint64(0) || m > tail {
		m = tail
	}
	for m > hc {
		if cas16(h, OffHeadCache, hc, ep, m, ep) {
			return m
		}
		var ep2 uint64
		hc, ep2 = load16(h, OffHeadCache)
		if ep2 != ep {
			break
		}
	}
	return hc
}

// Len returns the number of records in the claim.
func (c *Claim) Len() int { return len(c.recs) }

// ID returns the event ID of record i.
func (c *Claim) ID(i int) uint64 { return c.id0 + uint64(i) }

// Meta returns the writable metadata bytes of record i, in the mapping.
func (c *Claim) Meta(i int) []byte {
	o := c.recs[i].off + RecHeaderSize
	return c.r.data[o : o+c.recs[i].meta : o+c.recs[i].meta]
}

// Data returns the writable data bytes of record i, in the mapping.
func (c *Claim) Data(i int) []byte {
	o := c.recs[i].off + RecHeaderSize + c.recs[i].meta
	return c.r.data[o : o+c.recs[i].data : o+c.recs[i].data]
}

// Pos returns the position of the first record.
func (c *Claim) Pos() uint64 { return c.pos }

// End returns the position just past the claim.
func (c *Claim) End() uint64 { return c.end }

// Commit publishes every record of the claim at once. It fails with
// ErrAbandoned if a reader gave up on the claim (it took longer than the
// abandon timeout); the records are then lost, and Commit has written
// nothing: the space may already hold other records.
func (c *Claim) Commit() error {
	if c.r == nil || c.done {
		return fmt.Errorf("ring: commit of a claim that is not open")
	}
	c.done = true
	r, d := c.r, c.r.data
	pos, L, off0 := c.pos, c.end-c.pos, c.recs[0].off
	pid := uint64(r.self.PID)
	recLen0 := uint64(RecHeaderSize + c.recs[0].meta + c.recs[0].data)
	if !cas16(d, off0, pos|StateClaimed, L|pid<<32, pos|StateCommitted, L|recLen0<<32) {
		return fmt.Errorf("%w: commit at position %d in %s: a reader gave the claim up after the claim timeout %v, and the space may hold other events now; the commit wrote nothing",
			ErrAbandoned, pos, r.path, time.Duration(r.abandon.Load()))
	}
	r.wakeData()
	return nil
}

// writeHeaders writes, right after the claim is won, every header field but
// record 0's state: the IDs, metadata lengths and pid of every record, and
// the COMMITTED headers of records 1..k-1. Nobody reads past record 0 before
// it commits (or, abandoned, becomes padding over the whole claim), and the
// seq-cst commit CAS publishes these stores; so Commit is that one CAS, and
// a commit that comes after readers gave the claim up writes nothing over
// space that is no longer the claim's.
func (c *Claim) writeHeaders() {
	d := c.r.data
	le := binary.LittleEndian
	pid := c.r.self.PID
	for i := range c.recs {
		rc := &c.recs[i]
		le.PutUint64(d[rc.off+RecOffEventID:], c.id0+uint64(i))
		le.PutUint32(d[rc.off+RecOffMetaLen:], uint32(rc.meta))
		le.PutUint32(d[rc.off+RecOffPID:], pid)
		if i > 0 {
			recLen := uint64(RecHeaderSize + rc.meta + rc.data)
			storePlain64(d, rc.off+RecOffWord1, align16(recLen)|recLen<<32)
			storePlain64(d, rc.off+RecOffWord0, (c.pos+uint64(rc.off-c.recs[0].off))|StateCommitted)
		}
	}
}

// Abort turns the claim into padding that readers skip.
func (c *Claim) Abort() error {
	if c.r == nil || c.done {
		return fmt.Errorf("ring: abort of a claim that is not open")
	}
	c.done = true
	r := c.r
	L := c.end - c.pos
	if !cas16(r.data, c.recs[0].off, c.pos|StateClaimed, L|uint64(r.self.PID)<<32, c.pos|StatePadding, L) {
		return fmt.Errorf("%w: abort at position %d in %s", ErrAbandoned, c.pos, r.path)
	}
	r.wakeData()
	return nil
}
