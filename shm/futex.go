package shm

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrTimeout is returned by FutexWait when its timeout passed.
var ErrTimeout = errors.New("shm: futex wait timed out")

// Shared (not FUTEX_PRIVATE) operations: the words live in MAP_SHARED files
// and waiters and wakers are in different processes.
const (
	futexWait = 0
	futexWake = 1
)

// FutexWait sleeps while *addr == val, at most timeout (timeout < 0: no
// limit). It returns nil when woken, when *addr != val on entry, and on a
// signal (spurious: the caller rechecks its condition); ErrTimeout when the
// timeout passed.
func FutexWait(addr *uint32, val uint32, timeout time.Duration) error {
	var tsp unsafe.Pointer
	var ts unix.Timespec
	if timeout >= 0 {
		ts = unix.NsecToTimespec(int64(timeout))
		tsp = unsafe.Pointer(&ts)
	}
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait,
		uintptr(val), uintptr(tsp), 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	}
	return e
}

// FutexWake wakes at most n waiters on addr and returns how many it woke.
func FutexWake(addr *uint32, n int) (int, error) {
	if n < 0 {
		n = int(^uint32(0) >> 1)
	}
	r, _, e := unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake,
		uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
