package ring

import (
	"sync"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// liveTTL is how long a liveness answer is reused: /proc reads are slow.
const liveTTL = 50 * time.Millisecond

type liveEntry struct {
	alive bool
	at    time.Time
}

// liveCache caches process liveness for the whole process.
var liveCache struct {
	mu    sync.Mutex
	procs map[shm.Process]liveEntry
	pids  map[uint32]liveEntry
}

// procAlive reports p.Alive(), cached for liveTTL. Our own process is alive.
func procAlive(p shm.Process) bool {
	if p == shm.Self() {
		return true
	}
	return cachedAlive(&liveCache.procs, p, p.Alive)
}

// pidAlive reports whether pid names a live process, cached for liveTTL.
func pidAlive(pid uint32) bool {
	if pid == shm.Self().PID {
		return true
	}
	return cachedAlive(&liveCache.pids, pid, func() bool { return shm.PIDAlive(pid) })
}

// cachedAlive looks k up in the cache m, asking alive when the entry is
// missing or older than liveTTL; the cache is dropped when it grows large.
func cachedAlive[K comparable](m *map[K]liveEntry, k K, alive func() bool) bool {
	now := time.Now()
	liveCache.mu.Lock()
	e, ok := (*m)[k]
	liveCache.mu.Unlock()
	if ok && now.Sub(e.at) < liveTTL {
		return e.alive
	}
	a := alive()
	liveCache.mu.Lock()
	if *m == nil || len(*m) > 4096 {
		*m = make(map[K]liveEntry)
	}
	(*m)[k] = liveEntry{a, now}
	liveCache.mu.Unlock()
	return a
}
