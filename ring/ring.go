package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// DefaultAbandonTimeout is how long a reader waits on a claim whose producer
// is alive (or unknown) before turning it into padding.
const DefaultAbandonTimeout = 2 * time.Second

// deadGrace is how long a reader waits on a claim of a dead producer.
const deadGrace = 10 * time.Millisecond

// Options configure Create.
type Options struct {
	Capacity    int         // data region bytes: a power of two in [64 KiB, 1 GiB]
	ReaderSlots int         // default DefaultSlots, at most MaxSlots
	FirstID     uint64      // ID of the first record
	Durable     bool        // space is reused only behind ArchivedPos too
	Perm        os.FileMode // default 0600
	GID         int         // > 0: give the file this group (a topic shared with a group)
	// TopicID and Partition say which topic incarnation and partition the
	// ring belongs to; Open's caller checks them, so that a ring of another
	// topic (a hard link, a copy) put at this one's name is refused.
	TopicID   uint64
	Partition uint32
}

// Ring is one process's handle on a ring file. Its methods are safe for
// concurrent use; Claims and Readers must not be used after Close.
type Ring struct {
	m       *shm.Mapping
	path    string
	hdr     []byte // header region
	data    []byte // data region, Capacity bytes
	cap     uint64
	mask    uint64
	slots   int
	durable bool
	firstID uint64
	self    shm.Process
	abandon atomic.Int64 // nanoseconds
	closed  atomic.Bool
}

// Create makes a new ring file dir/name. If it exists the error wraps
// os.ErrExist.
func Create(dir, name string, o Options) (*Ring, error) {
	if !archSupported {
		return nil, errArch
	}
	if o.ReaderSlots == 0 {
		o.ReaderSlots = DefaultSlots
	}
	if o.Perm == 0 {
		o.Perm = 0600
	}
	if o.Capacity < MinCapacity || o.Capacity > MaxCapacity || o.Capacity&(o.Capacity-1) != 0 {
		return nil, fmt.Errorf("ring: create %s: capacity %d is not a power of two in [%d, %d]", name, o.Capacity, MinCapacity, MaxCapacity)
	}
	if o.ReaderSlots < 1 || o.ReaderSlots > MaxSlots {
		return nil, fmt.Errorf("ring: create %s: %d reader slots, want 1..%d", name, o.ReaderSlots, MaxSlots)
	}
	hs := headerSizeFor(o.ReaderSlots)
	gid := -1
	if o.GID > 0 {
		gid = o.GID
	}
	m, err := shm.Create(dir, name, hs+o.Capacity, o.Perm, gid)
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	b := m.Bytes()
	copy(b[OffMagic:], Magic)
	le := binary.LittleEndian
	le.PutUint32(b[OffVersion:], Version)
	le.PutUint32(b[OffHeaderSize:], uint32(hs))
	le.PutUint64(b[OffCapacity:], uint64(o.Capacity))
	le.PutUint32(b[OffReaderSlots:], uint32(o.ReaderSlots))
	var fl uint32
	if o.Durable {
		fl |= FlagDurable
	}
	le.PutUint32(b[OffFlags:], fl)
	le.PutUint64(b[OffFirstID:], o.FirstID)
	le.PutUint64(b[OffCreatedUnixNano:], uint64(time.Now().UnixNano()))
	le.PutUint32(b[OffCreatorPID:], shm.Self().PID)
	le.PutUint64(b[OffTopicID:], o.TopicID)
	le.PutUint32(b[OffPartition:], o.Partition)
	store64(b, OffTailID, o.FirstID)
	r, err := newRing(m)
	if err != nil {
		m.Close()
		os.Remove(m.Path())
		return nil, err
	}
	return r, nil
}

// Open maps an existing ring file that t trusts (its owner and mode; a
// symbolic link is never followed) and validates its header. Garbage gives
// an error wrapping ErrCorrupt (or a version error), never a panic; a file
// t refuses an error wrapping os.ErrPermission.
func Open(dir, name string, t shm.Trust) (*Ring, error) {
	if !archSupported {
		return nil, errArch
	}
	m, err := shm.Open(dir, name, t)
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	r, err := newRing(m)
	if err != nil {
		m.Close()
		return nil, err
	}
	return r, nil
}

func newRing(m *shm.Mapping) (*Ring, error) {
	b := m.Bytes()
	path := m.Path()
	bad := func(off int, field string, v uint64, why string) error {
		return &CorruptError{Path: path, Pos: uint64(off), Field: field, Value: v, Why: why}
	}
	if len(b) < HeaderBase {
		return nil, bad(0, "file size", uint64(len(b)), "shorter than a ring header")
	}
	if !bytes.Equal(b[OffMagic:OffMagic+8], []byte(Magic)) {
		return nil, bad(OffMagic, "magic", binary.LittleEndian.Uint64(b), "not a ring file")
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[OffVersion:]); v != Version {
		return nil, fmt.Errorf("ring: %s: version %d, this code reads version %d: %w", path, v, Version, ErrCorrupt)
	}
	ns := le.Uint32(b[OffReaderSlots:])
	if ns < 1 || ns > MaxSlots {
		return nil, bad(OffReaderSlots, "readerSlots", uint64(ns), fmt.Sprintf("want 1..%d", MaxSlots))
	}
	hs := le.Uint32(b[OffHeaderSize:])
	if int(hs) != headerSizeFor(int(ns)) {
		return nil, bad(OffHeaderSize, "headerSize", uint64(hs), fmt.Sprintf("want %d for %d slots", headerSizeFor(int(ns)), ns))
	}
	c := le.Uint64(b[OffCapacity:])
	if c < MinCapacity || c > MaxCapacity || bits.OnesCount64(c) != 1 {
		return nil, bad(OffCapacity, "capacity", c, "not a power of two in [64 KiB, 1 GiB]")
	}
	if uint64(len(b)) != uint64(hs)+c {
		return nil, bad(0, "file size", uint64(len(b)), fmt.Sprintf("want headerSize+capacity = %d", uint64(hs)+c))
	}
	fl := le.Uint32(b[OffFlags:])
	if fl&^FlagDurable != 0 {
		return nil, bad(OffFlags, "flags", uint64(fl), "unknown flag bits")
	}
	r := &Ring{
		m: m, path: path, hdr: b[:hs], data: b[hs:], cap: c, mask: c - 1,
		slots: int(ns), durable: fl&FlagDurable != 0, firstID: le.Uint64(b[OffFirstID:]),
		self: shm.Self(),
	}
	r.abandon.Store(int64(DefaultAbandonTimeout))
	// Positions only grow, and on a live ring headCache <= tailPos <=
	// headCache + capacity holds at every instant. Each bound is checked
	// against loads taken in the order that keeps it true while producers
	// and readers run: a value that must not exceed the tail is loaded
	// before the tail, the head that the tail must not outrun by more than
	// the capacity after it.
	head := load64(b, OffHeadCache)
	arch := load64(b, OffArchivedPos)
	var maxSlot uint64
	for i := 0; i < r.slots+ProducerSlots; i++ {
		so := r.slotOff(i)
		st := load32(b, so+SlotOffState) & slotStateMask
		if st > SlotProducer || (i < r.slots && st == SlotProducer) || (i >= r.slots && st == SlotActive) {
			return nil, bad(so+SlotOffState, fmt.Sprintf("slot %d state", i), uint64(st), "want 0, 1, or 2 (reader slots) or 3 (producer slots)")
		}
		if st == SlotActive {
			rp := load64(b, so+SlotOffReleasePos)
			if rp%RecordAlign != 0 {
				return nil, bad(so+SlotOffReleasePos, fmt.Sprintf("slot %d releasePos", i), rp, "not 16-aligned")
			}
			maxSlot = max(maxSlot, rp)
		}
	}
	tail, tid := load16(b, OffTailPos) // one atomic pair: IDs and positions of one instant
	headAfter := load64(b, OffHeadCache)
	switch {
	case tail%RecordAlign != 0 || tail >= MaxPos:
		return nil, bad(OffTailPos, "tailPos", tail, "not 16-aligned or past 2^62")
	case head%RecordAlign != 0:
		return nil, bad(OffHeadCache, "headCache", head, "not 16-aligned")
	case arch%RecordAlign != 0:
		return nil, bad(OffArchivedPos, "archivedPos", arch, "not 16-aligned")
	case head > tail:
		return nil, bad(OffHeadCache, "headCache", head, fmt.Sprintf("beyond tailPos %d", tail))
	case headAfter < head || (tail > headAfter && tail-headAfter > c):
		return nil, bad(OffHeadCache, "headCache", headAfter, fmt.Sprintf("more than capacity behind tailPos %d (or moved backwards from %d)", tail, head))
	case arch > tail:
		return nil, bad(OffArchivedPos, "archivedPos", arch, fmt.Sprintf("beyond tailPos %d", tail))
	case maxSlot > tail:
		return nil, bad(HeaderBase, "slot releasePos", maxSlot, fmt.Sprintf("beyond tailPos %d", tail))
	case !idFits(tid, r.firstID, tail):
		return nil, bad(OffTailID, "tailID", tid, fmt.Sprintf("not in [firstID %d, firstID + tailPos/32]", r.firstID))
	}
	if v := load32(b, OffComplete); v > 1 {
		return nil, bad(OffComplete, "complete", uint64(v), "want 0 or 1")
	}
	if v := load32(b, OffDeleted); v > 1 {
		return nil, bad(OffDeleted, "deleted", uint64(v), "want 0 or 1")
	}
	return r, nil
}

func (r *Ring) slotOff(i int) int { return HeaderBase + i*SlotSize }

// slotState returns the state of the slot at so, without its generation.
func (r *Ring) slotState(so int) uint32 { return load32(r.hdr, so+SlotOffState) & slotStateMask }

// freeSlot frees the slot at so if its state word is still w: a slot freed
// and taken again since w was loaded has another generation and is left
// alone.
func (r *Ring) freeSlot(so int, w uint32) bool {
	return cas32(r.hdr, so+SlotOffState, w, w&^slotStateMask|SlotFree)
}

// Close unmaps the ring. It must not run concurrently with other methods of
// the Ring or of its Claims and Readers, and none of them (nor Entry slices)
// may be used afterwards: the memory is gone. Idempotent.
func (r *Ring) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	return r.m.Close()
}

// CloseKeepingViews is Close for a ring whose Entry and Claim slices may
// outlive it (zero-copy events kept by a user): its addresses stay mapped,
// to private zero pages, so that such a slice reads zeros instead of
// faulting. The address range stays reserved for the life of the process.
func (r *Ring) CloseKeepingViews() error {
	if r.closed.Swap(true) {
		return nil
	}
	return r.m.Retire()
}

// TopicID returns the topic incarnation recorded at creation.
func (r *Ring) TopicID() uint64 { return binary.LittleEndian.Uint64(r.hdr[OffTopicID:]) }

// Partition returns the partition recorded at creation.
func (r *Ring) Partition() uint32 { return binary.LittleEndian.Uint32(r.hdr[OffPartition:]) }

// Path returns the ring file's path.
func (r *Ring) Path() string { return r.path }

// LockName takes the ring's lock of a reader name: while one holder (in any
// process) has it, LockName of the same name fails with ErrNameInUse.
// Closing the returned file releases it, as does the death of the process.
// Names are locked at a byte offset past the ring's end derived from a
// 61-bit hash of the name.
func (r *Ring) LockName(name string) (io.Closer, error) {
	h := fnv.New64a()
	h.Write([]byte(name))
	f, err := r.m.LockRange(1<<62 | int64(h.Sum64()&(1<<61-1)))
	if errors.Is(err, shm.ErrRangeLocked) {
		return nil, fmt.Errorf("%w: %q in %s", ErrNameInUse, name, r.path)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Owner says who owned the ring file, and its mode, when it was mapped.
func (r *Ring) Owner() shm.FileOwner { return r.m.Owner() }

// Capacity returns the data region size in bytes.
func (r *Ring) Capacity() int { return int(r.cap) }

// Durable reports whether space is also pinned by ArchivedPos.
func (r *Ring) Durable() bool { return r.durable }

// FirstID returns the ID of the first record of this ring file.
func (r *Ring) FirstID() uint64 { return r.firstID }

// MaxRecordSize returns the largest 32+len(meta)+len(data) of one record:
// Capacity/2. A record never crosses the end of the ring, so one of half
// the capacity is always placeable once the ring has drained (at worst
// after padding of less than its size). A batch may total at most
// Capacity/2 bytes too.
func (r *Ring) MaxRecordSize() int { return int(r.cap / 2) }

// SetAbandonTimeout sets how long readers of this handle wait on a claim of a
// live producer before turning it into padding.
func (r *Ring) SetAbandonTimeout(d time.Duration) { r.abandon.Store(int64(d)) }

// ArchivedPos returns the position up to which records are archived.
func (r *Ring) ArchivedPos() uint64 { return load64(r.hdr, OffArchivedPos) }

// SetArchived advances ArchivedPos to pos (never backwards) and wakes
// producers waiting for space and WaitArchived callers.
func (r *Ring) SetArchived(pos uint64) {
	for {
		old := load64(r.hdr, OffArchivedPos)
		if pos <= old {
			return
		}
		if cas64(r.hdr, OffArchivedPos, old, pos) {
			break
		}
	}
	add32(r.hdr, OffArchivedSeq, 1)
	if load32(r.hdr, OffArchivedWaiters) > 0 {
		shm.FutexWake(p32(r.hdr, OffArchivedSeq), -1)
	}
	r.wakeSpace()
}

// WaitArchived waits until ArchivedPos >= pos (timeout < 0: no limit).
func (r *Ring) WaitArchived(pos uint64, timeout time.Duration) error {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if load64(r.hdr, OffArchivedPos) >= pos {
			return nil
		}
		if r.closed.Load() {
			return ErrClosed
		}
		if r.Deleted() {
			return r.deletedError()
		}
		d := 100 * time.Millisecond
		if timeout >= 0 {
			rem := time.Until(deadline)
			if rem <= 0 {
				return fmt.Errorf("%w: archived position %d < %d in %s", ErrTimeout, r.ArchivedPos(), pos, r.path)
			}
			d = min(d, rem)
		}
		seq := load32(r.hdr, OffArchivedSeq)
		add32(r.hdr, OffArchivedWaiters, 1)
		if load64(r.hdr, OffArchivedPos) < pos {
			shm.FutexWait(p32(r.hdr, OffArchivedSeq), seq, d)
		}
		add32(r.hdr, OffArchivedWaiters, -1)
	}
}

// SetArchiver records the archiving process (informational).
func (r *Ring) SetArchiver(p shm.Process) {
	store32(r.hdr, OffArchiverPID, p.PID)
	store64(r.hdr, OffArchiverStart, p.Start)
}

// MarkComplete sets the end-of-stream flag and wakes every reader.
func (r *Ring) MarkComplete() {
	store32(r.hdr, OffComplete, 1)
	add32(r.hdr, OffDataSeq, 1)
	shm.FutexWake(p32(r.hdr, OffDataSeq), -1)
}

// Complete reports whether MarkComplete was called.
func (r *Ring) Complete() bool { return load32(r.hdr, OffComplete) != 0 }

// MarkDeleted records that the ring's topic was deleted (before its file
// is removed), so that every process still using it gets ErrDeleted from
// its next claim, read or wait rather than streaming into a file nobody
// will open again; it wakes every sleeper.
func (r *Ring) MarkDeleted() {
	store32(r.hdr, OffDeleted, 1)
	add32(r.hdr, OffDataSeq, 1)
	shm.FutexWake(p32(r.hdr, OffDataSeq), -1)
	add32(r.hdr, OffSpaceSeq, 1)
	shm.FutexWake(p32(r.hdr, OffSpaceSeq), -1)
	add32(r.hdr, OffArchivedSeq, 1)
	shm.FutexWake(p32(r.hdr, OffArchivedSeq), -1)
}

// Deleted reports whether MarkDeleted was called.
func (r *Ring) Deleted() bool { return load32(r.hdr, OffDeleted) != 0 }

func (r *Ring) deletedError() error {
	return fmt.Errorf("%w: %s", ErrDeleted, r.path)
}

// wakeData wakes sleeping readers if there are any. Called after a state
// change readers wait for (commit, abort, padding). The caller's change was
// made with a seq-cst CAS before this load of dataWaiters; a reader
// increments dataWaiters before re-checking the header (both seq-cst), so
// either we see its increment and bump the sequence it will wait on, or it
// sees our change and does not sleep.
func (r *Ring) wakeData() {
	if load32(r.hdr, OffDataWaiters) > 0 {
		add32(r.hdr, OffDataSeq, 1)
		shm.FutexWake(p32(r.hdr, OffDataSeq), -1)
	}
}

// wakeSpace wakes producers waiting for space (same pattern as wakeData).
func (r *Ring) wakeSpace() {
	if load32(r.hdr, OffSpaceWaiters) > 0 {
		add32(r.hdr, OffSpaceSeq, 1)
		shm.FutexWake(p32(r.hdr, OffSpaceSeq), -1)
	}
}

// SlotInfo describes one active reader slot, or a producer's slot.
type SlotInfo struct {
	Index               int
	Producer            bool // a producer's presence; ReadPos and ReleasePos are 0
	Name                string
	Process             shm.Process
	Alive               bool
	ReadPos, ReleasePos uint64
	Attached            time.Time
}

// Stats is a snapshot of a ring's header.
type Stats struct {
	Path                                             string
	Version, Capacity                                int
	FirstID, TailPos, TailID, HeadCache, ArchivedPos uint64
	Durable, Complete, Deleted                       bool
	TopicID                                          uint64
	Partition                                        uint32
	Archiver                                         shm.Process
	Slots                                            []SlotInfo
}

// TailID returns the ID the next claim gets: one past the last event
// written (or being written).
func (r *Ring) TailID() uint64 {
	_, id := load16(r.hdr, OffTailPos)
	return id
}

// Stats returns a snapshot of the header and of every active slot.
func (r *Ring) Stats() Stats {
	tp, tid := load16(r.hdr, OffTailPos)
	s := Stats{
		Path: r.path, Version: Version, Capacity: int(r.cap), FirstID: r.firstID, TopicID: r.TopicID(), Partition: r.Partition(),
		TailPos: tp, TailID: tid, HeadCache: load64(r.hdr, OffHeadCache),
		ArchivedPos: r.ArchivedPos(), Durable: r.durable, Complete: r.Complete(), Deleted: r.Deleted(),
		Archiver: shm.Process{PID: load32(r.hdr, OffArchiverPID), Start: load64(r.hdr, OffArchiverStart)},
	}
	for i := 0; i < r.slots+ProducerSlots; i++ {
		so := r.slotOff(i)
		st := r.slotState(so)
		if st != SlotActive && st != SlotProducer {
			continue
		}
		p := r.slotProc(so)
		s.Slots = append(s.Slots, SlotInfo{
			Index: i, Producer: st == SlotProducer, Name: r.slotName(so), Process: p, Alive: p.Alive(),
			ReadPos: load64(r.hdr, so+SlotOffReadPos), ReleasePos: load64(r.hdr, so+SlotOffReleasePos),
			Attached: time.Unix(0, int64(load64(r.hdr, so+SlotOffAttachedNano))),
		})
	}
	return s
}

func (r *Ring) slotProc(so int) shm.Process {
	return shm.Process{PID: load32(r.hdr, so+SlotOffPID), Start: load64(r.hdr, so+SlotOffStart)}
}

func (r *Ring) slotName(so int) string {
	n := r.hdr[so+SlotOffName : so+SlotOffName+SlotNameLen]
	if i := bytes.IndexByte(n, 0); i >= 0 {
		n = n[:i]
	}
	return string(n)
}

// ReclaimDead frees the slots of readers and producers whose process is
// gone and returns how many it freed.
func (r *Ring) ReclaimDead() int {
	n := 0
	for i := 0; i < r.slots+ProducerSlots; i++ {
		so := r.slotOff(i)
		w := load32(r.hdr, so+SlotOffState)
		if st := w & slotStateMask; (st == SlotActive || st == SlotProducer) && !r.slotProc(so).Alive() {
			if r.freeSlot(so, w) {
				n++
			}
		}
	}
	if n > 0 {
		r.wakeSpace()
	}
	return n
}
