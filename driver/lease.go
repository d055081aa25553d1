package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora/segment"
	"golang.org/x/sys/unix"
)

// An ID lease keeps event IDs from repeating when a ring is lost (reboot,
// /dev/shm cleared) with events the log never got: under durability none,
// or async events not yet archived. Before a producer commits an event whose
// ID is at or past the lease, it extends the lease durably by a block of
// IDs; a ring rebuilt later starts at the lease. So every ID any process
// ever saw is below the first ID of the new ring, at the price of a gap of
// at most one block after a loss, and one fsynced file write per block.
const (
	idLeaseFile  = "ID_LEASE"
	idLeaseLock  = "ID_LEASE.lock"
	idLeaseBlock = 1 << 20 // the least IDs one extension covers
	maxLeaseStep = 1 << 30 // the most, for a producer of millions of events a second
	maxLease     = 1 << 62
)

// A lease is extended in the background once half of what it covers is
// used, so that a push only waits for the fsync when IDs outrun it; and
// when extensions come less than leaseQuick apart, the block doubles, so a
// fast producer extends about once a second rather than tens of times.
const leaseQuick = time.Second

type idLease struct {
	logger  *slog.Logger
	dir     string
	mode    os.FileMode
	limit   atomic.Uint64 // IDs below are covered by the stored lease
	refresh atomic.Uint64 // from this ID on, extend in the background
	bg      atomic.Bool   // a background extension is running
	mu      sync.Mutex
	block   uint64    // under mu: IDs the next extension adds
	last    time.Time // under mu: when the last extension was stored
}

// cover makes sure the stored lease is past id. When it cannot be stored
// (a read-only or full root) it logs and lets the event through.
func (l *idLease) cover(id uint64) {
	if id < l.refresh.Load() {
		return
	}
	if id < l.limit.Load() {
		// Covered, but the lease is half used: extend it meanwhile.
		if l.bg.CompareAndSwap(false, true) {
			go func() {
				defer l.bg.Store(false)
				l.mu.Lock()
				defer l.mu.Unlock()
				l.extendLocked(id)
			}()
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if id < l.limit.Load() {
		return
	}
	l.extendLocked(id)
}

// extendLocked extends the lease past id by a block; l.mu is held.
func (l *idLease) extendLocked(id uint64) {
	if l.block == 0 {
		l.block = idLeaseBlock
	}
	now := time.Now()
	switch {
	case !l.last.IsZero() && now.Sub(l.last) < leaseQuick:
		l.block = min(2*l.block, maxLeaseStep)
	case now.Sub(l.last) > 30*leaseQuick:
		l.block = max(l.block/2, idLeaseBlock)
	}
	l.last = now
	if err := l.extend(id, l.block); err != nil {
		// The ring is still writable: events flow, but until the lease can be
		// stored again an ID may repeat after the ring is lost. Say so once
		// per block, and try again a block later.
		l.logger.Warn("cannot store the ID lease; IDs may repeat if the ring is lost before it can", "dir", l.dir, "err", err)
		l.limit.Store(id + 1 + l.block)
	}
	l.refresh.Store(l.limit.Load() - l.block/2)
}

// extend stores a lease past id by block IDs, under an flock shared by all
// processes.
func (l *idLease) extend(id, block uint64) error {
	lock, err := os.OpenFile(filepath.Join(l.dir, idLeaseLock), os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW, l.mode) // flock needs no write access
	if err != nil {
		return fmt.Errorf("ID lease: %w", err)
	}
	segment.FixMode(lock, l.mode)
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ID lease: lock %s: %w", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	cur, err := readIDLease(l.dir)
	if err != nil {
		return err
	}
	if cur <= id+block/2 {
		cur = id + 1 + block
		if err := writeIDLease(l.dir, cur, l.mode); err != nil {
			return err
		}
	}
	l.limit.Store(cur)
	return nil
}

// readIDLease returns the stored lease, 0 when there is none.
func readIDLease(dir string) (uint64, error) {
	path := filepath.Join(dir, idLeaseFile)
	text, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ID lease: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(text)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ID lease: %s holds %q, not a number: %w", path, text, err)
	}
	// A ring's IDs must stay clear of NoMoreEvents and of overflow.
	if v >= maxLease {
		return 0, fmt.Errorf("ID lease: %s holds %d, more than any ID this log can have reached (%d)", path, v, uint64(maxLease))
	}
	return v, nil
}

// writeIDLease replaces the lease file atomically and durably.
func writeIDLease(dir string, v uint64, mode os.FileMode) error {
	path := filepath.Join(dir, idLeaseFile)
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, []byte(strconv.FormatUint(v, 10)+"\n"), mode); err != nil {
		return fmt.Errorf("ID lease: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ID lease: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("ID lease: %w", err)
	}
	return nil
}
