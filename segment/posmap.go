package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A position map (format "DSP2", see FORMAT.md) holds a consumer's position
// in a mapped file of the partition's positions/ directory, in two slots of
// (next, next^posCheck). Storing a position is two 8-byte stores into the
// older slot: the page cache keeps them whatever happens to the process, a
// store torn by its death leaves the other slot, one position older, and
// Sync makes them durable against a crash of the operating system.
const (
	posMapMagic = "DSP2"
	posMapLen   = 40
	posSlotA    = 8  // next, then next^posCheck
	posSlotB    = 24 // the same
	posCheck    = 0x9E3779B97F4A7C15
)

// PositionMap is one consumer's position, mapped. Its methods are safe for
// concurrent use.
type PositionMap struct {
	path   string
	mu     sync.Mutex
	f      *os.File
	b      []byte
	next   uint64 // the stored position
	synced uint64 // the position Sync last made durable
	slot   int    // the slot the next Store writes: the older one
	dirty  atomic.Bool
}

// OpenPositionMap opens (creating it when missing) the position map of
// consumer in dir and returns its stored position; ok is false when none
// was ever stored. A position file of the older format is converted (its
// value kept). Damage is an error naming the file, never a value.
func OpenPositionMap(dir, consumer string) (_ *PositionMap, next uint64, ok bool, err error) {
	if err := validConsumerName(consumer); err != nil {
		return nil, 0, false, err
	}
	pdir := filepath.Join(dir, positionsDir)
	dirMode, fileMode := modesOf(dir)
	if err := mkdirAs(pdir, dirMode); err != nil {
		return nil, 0, false, err
	}
	path := filepath.Join(pdir, consumer)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return nil, 0, false, fmt.Errorf("segment: position of %q: %w", consumer, err)
	}
	fixMode(f, fileMode)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, false, fmt.Errorf("segment: position file %s is not a regular file", path)
	}
	var img [posMapLen]byte
	switch st.Size() {
	case 0: // new
		copy(img[:], posMapMagic)
	case posLen: // the older format: convert it, durably, before use
		old := make([]byte, posLen)
		if _, err := f.ReadAt(old, 0); err != nil {
			return nil, 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
		}
		v, err := decodePosition(old)
		if err != nil {
			return nil, 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
		}
		copy(img[:], posMapMagic)
		putSlot(img[:], posSlotA, v)
		next, ok = v, true
	case posMapLen:
		if _, err := f.ReadAt(img[:], 0); err != nil {
			return nil, 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
		}
		if next, ok, err = decodePositionMap(img[:]); err != nil {
			return nil, 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
		}
	default:
		return nil, 0, false, fmt.Errorf("segment: position file %s is %d bytes, neither %d nor %d", path, st.Size(), posLen, posMapLen)
	}
	if st.Size() != posMapLen {
		_, err := f.WriteAt(img[:], 0)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			if st.Size() == 0 {
				os.Remove(path) // ours, empty: leave nothing half made
			}
			return nil, 0, false, fmt.Errorf("segment: position file %s: %w", path, err)
		}
	}
	b, err := unix.Mmap(int(f.Fd()), 0, posMapLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, 0, false, fmt.Errorf("segment: map position file %s: %w", path, err)
	}
	p := &PositionMap{path: path, f: f, b: b, next: next, synced: next}
	// Write the older slot first (an invalid one counts as older).
	if a, aok := slot(b, posSlotA); aok && (!ok || a == next) {
		p.slot = posSlotB
	} else {
		p.slot = posSlotA
	}
	return p, next, ok, nil
}

func putSlot(b []byte, off int, v uint64) {
	binary.LittleEndian.PutUint64(b[off:], v)
	binary.LittleEndian.PutUint64(b[off+8:], v^posCheck)
}

func slot(b []byte, off int) (uint64, bool) {
	v := binary.LittleEndian.Uint64(b[off:])
	return v, binary.LittleEndian.Uint64(b[off+8:]) == v^posCheck
}

// decodePositionMap reads the newest valid slot of a DSP2 image. Both
// slots empty (zero) is no position; anything else without a valid slot is
// damage.
func decodePositionMap(b []byte) (uint64, bool, error) {
	if len(b) != posMapLen || string(b[:len(posMapMagic)]) != posMapMagic {
		return 0, false, errors.New("bad position map length or magic")
	}
	a, aok := slot(b, posSlotA)
	c, cok := slot(b, posSlotB)
	switch {
	case aok && cok:
		return max(a, c), true, nil
	case aok:
		return a, true, nil
	case cok:
		return c, true, nil
	}
	for _, x := range b[posSlotA:] {
		if x != 0 {
			return 0, false, errors.New("both position slots damaged")
		}
	}
	return 0, false, nil
}

// Store records next as the position (never backwards). It is two atomic
// 8-byte stores into the mapping: no system call.
func (p *PositionMap) Store(next uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b == nil {
		return fmt.Errorf("%w: position file %s", ErrClosed, p.path)
	}
	if next <= p.next && p.next != 0 {
		return nil
	}
	// Plain stores (an atomic store is an XCHG here): an aligned 8-byte
	// store does not tear, and a reader of the file (the tool, the next
	// process of this name) that finds a slot half written, by a kill or
	// while it is written, sees its check fail and takes the other slot.
	w := (*[2]uint64)(unsafe.Pointer(&p.b[p.slot]))
	w[0] = next
	w[1] = next ^ posCheck
	p.next = next
	p.slot = posSlotA + posSlotB - p.slot
	if !p.dirty.Load() {
		p.dirty.Store(true)
	}
	return nil
}

// Dirty reports whether a Store is not yet made durable by Sync.
func (p *PositionMap) Dirty() bool { return p.dirty.Load() }

// Sync makes the stored position durable against a crash of the operating
// system (msync of the page), when it changed since the last Sync.
func (p *PositionMap) Sync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b == nil || !p.dirty.Load() {
		return nil
	}
	p.dirty.Store(false)
	if err := unix.Msync(p.b, unix.MS_SYNC); err != nil {
		p.dirty.Store(true)
		return fmt.Errorf("segment: sync position file %s: %w", p.path, err)
	}
	p.synced = p.next
	return nil
}

// Close syncs and unmaps the position. Idempotent.
func (p *PositionMap) Close() error {
	err := p.Sync()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b == nil {
		return err
	}
	if uerr := unix.Munmap(p.b); err == nil {
		err = uerr
	}
	p.b = nil
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path returns the position file's path.
func (p *PositionMap) Path() string { return p.path }
