package ring

import (
	"sync/atomic"
	"unsafe"
)

// All unsafe and atomic access to the mapping lives in this file.
//
// Shared invariants:
//   - b is a whole mapping (or its data region), which starts on a page
//     boundary; so an offset that is a multiple of 8 (16) is an 8 (16)-aligned
//     address, as the atomics below require.
//   - Every offset passed here is computed from constants of layout.go or
//     masked with Capacity-1 and 16-aligned, and the index expression b[off+n]
//     is bounds-checked: a bad offset panics in Go's bounds check instead of
//     touching memory outside the mapping. Callers validate everything they
//     read before deriving an offset from it, so that cannot happen.
//   - sync/atomic operations and cas128 are sequentially consistent (full
//     barriers on amd64); the Dekker-style wakeup protocol relies on that.

// p64 returns the address of the uint64 at b[off]. Requires off%8 == 0.
func p64(b []byte, off int) *uint64 {
	_ = b[off+7]
	return (*uint64)(unsafe.Pointer(&b[off]))
}

// p32 returns the address of the uint32 at b[off]. Requires off%4 == 0. Used
// for futex words as well.
func p32(b []byte, off int) *uint32 {
	_ = b[off+3]
	return (*uint32)(unsafe.Pointer(&b[off]))
}

// load64 atomically loads the uint64 at b[off] (off%8 == 0).
func load64(b []byte, off int) uint64 { return atomic.LoadUint64(p64(b, off)) }

// store64 atomically stores v at b[off] (off%8 == 0).
func store64(b []byte, off int, v uint64) { atomic.StoreUint64(p64(b, off), v) }

// cas64 is a CAS on the uint64 at b[off] (off%8 == 0).
func cas64(b []byte, off int, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(p64(b, off), old, new)
}

// load32 atomically loads the uint32 at b[off] (off%4 == 0).
func load32(b []byte, off int) uint32 { return atomic.LoadUint32(p32(b, off)) }

// store32 atomically stores v at b[off] (off%4 == 0).
func store32(b []byte, off int, v uint32) { atomic.StoreUint32(p32(b, off), v) }

// add32 atomically adds d to the uint32 at b[off] (off%4 == 0); wraps.
func add32(b []byte, off int, d int32) uint32 {
	return atomic.AddUint32(p32(b, off), uint32(d))
}

// cas32 is a CAS on the uint32 at b[off] (off%4 == 0).
func cas32(b []byte, off int, old, new uint32) bool {
	return atomic.CompareAndSwapUint32(p32(b, off), old, new)
}

// cas16 is a 128-bit CAS on b[off:off+16]; requires off%16 == 0 (the pair
// fields and record headers are all 16-aligned).
func cas16(b []byte, off int, old0, old1, new0, new1 uint64) bool {
	_ = b[off+15]
	return cas128((*uint64)(unsafe.Pointer(&b[off])), old0, old1, new0, new1)
}

// load16 reads b[off:off+16] as one atomic pair; off%16 == 0.
func load16(b []byte, off int) (uint64, uint64) {
	_ = b[off+15]
	return load128((*uint64)(unsafe.Pointer(&b[off])))
}

// atomicLoadPair reads the two words at addr with two atomic loads: not one
// snapshot, only a guess for a following cas128 (which checks it).
func atomicLoadPair(addr *uint64) (uint64, uint64) {
	a := atomic.LoadUint64(addr)
	b := atomic.LoadUint64((*uint64)(unsafe.Add(unsafe.Pointer(addr), 8)))
	return a, b
}

// touchLines reads one byte of every 64-byte line of b[from:to] so that the
// cache misses of a committed batch overlap instead of forming a chain (the
// reader's next position depends on the current record's length). Requires
// 0 <= from <= to <= len(b); the bytes are committed (no concurrent writer),
// and the value is only a sink.
func touchLines(b []byte, from, to int) byte {
	var s byte
	for i := from; i < to; i += LineSize {
		s += b[i]
	}
	return s
}

// storePlain64 is an ordinary (non-atomic, not fenced) aligned 8-byte store
// at b[off], off%8 == 0. Only for header words no other party reads before a
// later seq-cst operation of the same goroutine (the commit cas128) publishes
// them: x86 keeps stores in order, the call to the assembly cas128 is a
// compiler barrier, and an aligned 8-byte MOV never tears. It avoids the
// XCHG that atomic.StoreUint64 costs on amd64.
func storePlain64(b []byte, off int, v uint64) {
	*p64(b, off) = v
}
