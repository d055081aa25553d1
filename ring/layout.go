package ring

// Byte layout of a ring file. FORMAT.md documents every constant here under
// the same name.
const (
	Magic   = "DSPRING\x00"
	Version = 2

	LineSize      = 64   // fields written by different parties sit on separate lines
	PageSize      = 4096 // header regions are rounded up to this
	HeaderBase    = 4096 // fixed part of the header, before the reader slots
	SlotSize      = 128  // one reader slot
	MinCapacity   = 64 << 10
	MaxCapacity   = 1 << 30
	MaxSlots      = 4096
	DefaultSlots  = 64
	ProducerSlots = 64 // after the reader slots: producers' presence, never counted as readers
	RecordAlign   = 16
	RecHeaderSize = 32
	MaxPos        = 1 << 62 // positions at or past this are corrupt (4 EiB written)

	// line 0: read-only after create
	OffMagic           = 0  // [8]byte "DSPRING\x00"
	OffVersion         = 8  // uint32
	OffHeaderSize      = 12 // uint32, bytes before the data region
	OffCapacity        = 16 // uint64, data region bytes, power of two
	OffReaderSlots     = 24 // uint32
	OffFlags           = 28 // uint32, FlagDurable
	OffFirstID         = 32 // uint64, ID of the first record of this file
	OffCreatedUnixNano = 40 // int64
	OffCreatorPID      = 48 // uint32
	OffTopicID         = 52 // uint64, the topic incarnation the ring belongs to (its creator's choice)
	OffPartition       = 60 // uint32, the partition of that topic

	// line 1: the tail pair, changed only by cas128
	OffTailPos = 64 // uint64, next position to claim
	OffTailID  = 72 // uint64, next event ID to assign

	// line 2: the head cache pair, changed only by cas128
	OffHeadCache = 128 // uint64, lower bound of every pinned position
	OffHeadEpoch = 136 // uint64, bumped by every Attach

	// line 3: archiver
	OffArchivedPos     = 192 // uint64
	OffArchivedSeq     = 200 // uint32 futex word
	OffArchivedWaiters = 204 // uint32

	// line 4: readers sleep here
	OffDataSeq     = 256 // uint32 futex word
	OffDataWaiters = 260 // uint32

	// line 5: producers sleep here when full
	OffSpaceSeq     = 320 // uint32 futex word
	OffSpaceWaiters = 324 // uint32
	OffSpaceNeed    = 328 // uint64, the claim end a producer last slept for
	OffSpaceNeedAt  = 336 // int64, when (unix nanoseconds): waiters refresh it every sleep

	// line 6: end of stream, archiver identity
	OffComplete      = 384 // uint32, 1 = no more records
	OffArchiverPID   = 388 // uint32
	OffArchiverStart = 392 // uint64
	OffDeleted       = 400 // uint32, 1 = the topic was deleted: no more claims or reads

	// reader slots start at HeaderBase; offsets inside a slot
	SlotOffState        = 0  // uint32: SlotFree, SlotClaiming, SlotActive, SlotProducer
	SlotOffPID          = 4  // uint32
	SlotOffStart        = 8  // uint64, process start time
	SlotOffReadPos      = 16 // uint64, informational
	SlotOffReleasePos   = 24 // uint64, space before it may be reused
	SlotOffAttachedNano = 32 // int64
	SlotOffName         = 40 // [64]byte, NUL padded
	SlotNameLen         = 64

	// record header, at a 16-aligned position
	RecOffWord0   = 0  // uint64: pos | state (tag = pos>>4)
	RecOffWord1   = 8  // uint64: claimLen | recLen<<32 (COMMITTED) or pid<<32 (CLAIMED)
	RecOffEventID = 16 // uint64
	RecOffMetaLen = 24 // uint32
	RecOffPID     = 28 // uint32
)

// Flags.
const FlagDurable = 1

// Slot states.
const (
	SlotFree     = 0
	SlotClaiming = 1
	SlotActive   = 2
	SlotProducer = 3 // a live producer's presence: pins no space

	// The state word's low byte is the state, the rest a generation that
	// every take of the slot bumps: a party that decided to free a slot
	// (its process looked dead) frees it with a CAS of the word it saw,
	// which fails if the slot was freed and taken again meanwhile.
	slotStateMask = 0xff
	slotGenOne    = 1 << 8
)

// Record states (low 4 bits of word0).
const (
	StateClaimed   = 1
	StateCommitted = 2
	StatePadding   = 3
	stateMask      = 15
)

// headerSizeFor returns the header region size for n reader slots and the
// ProducerSlots producer slots after them.
func headerSizeFor(n int) int {
	return (HeaderBase + (n+ProducerSlots)*SlotSize + PageSize - 1) &^ (PageSize - 1)
}

func align16(n uint64) uint64 { return (n + RecordAlign - 1) &^ (RecordAlign - 1) }
