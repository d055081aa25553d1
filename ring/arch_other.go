//go:build !amd64

package ring

// The ring needs a 16-byte compare-and-swap (CMPXCHG16B); only amd64 has one
// implemented here.
func cas128(addr *uint64, old0, old1, new0, new1 uint64) bool {
	panic("ring: cas128 unsupported on this architecture")
}

func load128(addr *uint64) (uint64, uint64) {
	panic("ring: load128 unsupported on this architecture")
}

const archSupported = false
