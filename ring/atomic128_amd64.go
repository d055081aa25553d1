package ring

// cas128 atomically replaces the 16 bytes at addr (which must be 16-aligned)
// with (new0, new1) if they equal (old0, old1), using LOCK CMPXCHG16B. It is a
// full barrier, like the sync/atomic operations.
//
//go:noescape
func cas128(addr *uint64, old0, old1, new0, new1 uint64) bool

// load128 reads the 16 bytes at addr atomically: a CAS whose old and new
// values are equal never changes memory, and on failure CMPXCHG16B has
// loaded the current value, but Go cannot see it; so we CAS with a guess and
// retry with the pair read by two plain atomic loads until it matches.
func load128(addr *uint64) (uint64, uint64) {
	for {
		a, b := atomicLoadPair(addr)
		if cas128(addr, a, b, a, b) {
			return a, b
		}
	}
}

const archSupported = true
