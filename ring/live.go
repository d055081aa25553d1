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
	now := time.Now()
	liveCache.mu.Lock()
	e, ok := liveCache.procs[p]
	liveCache.mu.Unlock()
	if ok && now.Sub(e.at) < liveTTL {
		return e.alive
	}
	a := p.Alive()
	liveCache.mu.Lock()
	if liveCache.procs == nil || len(liveCache.procs) > 4096 {
		liveCache.procs = make(map[shm.Process]liveEntry)
	}
	liveCache.procs[p] = liveEntry{a, now}
	liveCache.mu.Unlock()
	return a
}

// pidAlive reports whether pid names a live process, cached for liveTTL.
func pidAlive(pid uint32) bool {
	if pid == shm.Self().PID {
		return true
	}
	now := time.Now()
	liveCache.mu.Lock()
	e, ok := liveCache.pids[pid]
	liveCache.mu.Unlock()
	if ok && now.Sub(e.at) < liveTTL {
		return e.alive
	}
	a := shm.PIDAlive(pid)
	liveCache.mu.Lock()
	if liveCache.pids == nil || len(liveCache.pids) > 4096 {
		liveCache.pids = make(map[uint32]liveEntry)
	}
	liveCache.pids[pid] = liveEntry{a, now}
	liveCache.mu.Unlock()
	return a
}
