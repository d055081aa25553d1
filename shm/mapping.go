package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// tmpSeq makes temporary names unique within the process.
var tmpSeq atomic.Uint64

// DefaultDir is where shared-memory files live on Linux.
const DefaultDir = "/dev/shm"

// MaxNameLen is the longest file name ValidName accepts, in bytes.
const MaxNameLen = 200

// ValidName refuses names that are empty, "." or "..", contain '/' or NUL, or
// are longer than MaxNameLen bytes: such names could escape the directory.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("shm: empty name")
	case name == "." || name == "..":
		return fmt.Errorf("shm: invalid name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("shm: name %q contains '/' or NUL", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("shm: name of %d bytes is longer than %d", len(name), MaxNameLen)
	}
	return nil
}

// Mapping is a file mapped read-write and shared.
type Mapping struct {
	path  string
	owner FileOwner
	f     *os.File // kept open: LockRange opens the same file again through it
	mu    sync.Mutex
	m     mmap.MMap
	b     []byte
}

// Create creates dir/name exclusively (O_EXCL, so nothing planted at the
// name is followed or reused) with mode perm and, when gid >= 0, group gid;
// sizes it to size bytes, maps it read-write shared and faults every page
// in. If the file exists the error wraps os.ErrExist.
func Create(dir, name string, size int, perm os.FileMode, gid int) (*Mapping, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("shm: create %s: size %d must be positive", name, size)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("shm: create: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	// The umask may have narrowed perm; the caller asked for exactly perm.
	if err := f.Chmod(perm); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("shm: create: %w", err)
	}
	if gid >= 0 {
		// A topic shared with a group: its members' processes check the
		// group of the files they map.
		if err := f.Chown(-1, gid); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("shm: create %s: give it group %d: %w", path, gid, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("shm: create: %w", err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("shm: create: %w", err)
	}
	m, err := mmap.MapRegion(f, size, mmap.RDWR, 0, 0)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("shm: create: map %s: %w", path, err)
	}
	prefault(m)
	keep = true
	return &Mapping{path: path, owner: ownerOf(&st), f: f, m: m, b: []byte(m)}, nil
}

// prefault faults every page of a fresh mapping in, so the first writer does
// not pay for page faults (slow in VMs with ballooning).
func prefault(b []byte) {
	if unix.Madvise(b, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	pg := os.Getpagesize()
	for i := 0; i < len(b); i += pg {
		b[i] = 0 // the file is new: every byte is already zero
	}
}

// Open maps the whole existing file dir/name read-write shared, once the
// open file passed the checks of t (see Trust). Errors wrap os.ErrNotExist
// or os.ErrPermission (also for a file t refuses).
func Open(dir, name string, t Trust) (*Mapping, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	f, err := t.openPath(path, unix.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("shm: open: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("shm: open: %w", err)
	}
	size := st.Size
	if size <= 0 || size > 1<<40 {
		return nil, fmt.Errorf("shm: open %s: unusable size %d", path, size)
	}
	m, err := mmap.MapRegion(f, int(size), mmap.RDWR, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: open: map %s: %w", path, err)
	}
	keep = true
	return &Mapping{path: path, owner: ownerOf(&st), f: f, m: m, b: []byte(m)}, nil
}

// ErrRangeLocked is what LockRange returns when another holder has the byte.
var ErrRangeLocked = errors.New("shm: locked by another holder")

// LockRange takes an exclusive lock on byte off of the mapped file (off may
// lie past its end) through a new open file description of the same file,
// so that two locks of one process conflict just as those of two processes
// do (open file description locks, F_OFD_SETLK). Closing the returned file
// releases the lock; so does the death of the process. A lock already held
// gives ErrRangeLocked.
func (m *Mapping) LockRange(off int64) (*os.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock() // Close must not free the descriptor we reopen
	if m.f == nil {
		return nil, fmt.Errorf("shm: lock %s: closed", m.path)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", m.f.Fd()), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: lock %s: reopen: %w", m.path, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	for {
		err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		if err == unix.EAGAIN || err == unix.EACCES {
			return nil, fmt.Errorf("%w: %s byte %d", ErrRangeLocked, m.path, off)
		}
		return nil, fmt.Errorf("shm: lock %s: %w", m.path, err)
	}
	return os.NewFile(uintptr(fd), m.path), nil
}

// Owner says who owned the file, and with which mode, when it was mapped.
func (m *Mapping) Owner() FileOwner { return m.owner }

// Bytes returns the mapped bytes; nil after Close.
func (m *Mapping) Bytes() []byte { return m.b }

// Path returns the file's path.
func (m *Mapping) Path() string { return m.path }

// Close unmaps the file. It is idempotent. Slices obtained from Bytes must
// not be used after Close (see Retire).
func (m *Mapping) Close() error {
	return m.close(false)
}

// Retire is Close for a mapping whose slices may outlive it (a zero-copy
// event kept after its consumer closed): the address range is not unmapped
// but replaced, in one mmap(MAP_FIXED), by private anonymous memory, so such
// a slice reads zeros and writes go nowhere, instead of faulting and killing
// the process. The range's virtual addresses stay reserved for the life of
// the process; its pages cost no memory until written.
func (m *Mapping) Retire() error {
	return m.close(true)
}

func (m *Mapping) close(retire bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return nil
	}
	b := m.b
	m.m, m.b = nil, nil
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	if !retire {
		if err := unix.Munmap(b); err != nil {
			return fmt.Errorf("shm: unmap %s: %w", m.path, err)
		}
		return nil
	}
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		// Unmapping is the fallback: the file's pages must be let go.
		if uerr := unix.Munmap(b); uerr != nil {
			return fmt.Errorf("shm: unmap %s: %w", m.path, uerr)
		}
	}
	return nil
}
