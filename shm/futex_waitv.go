package shm

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FutexWord is one word of a FutexWaitv: sleep while *Addr == Val.
type FutexWord struct {
	Addr *uint32
	Val  uint32
}

// MaxFutexWaitv is the kernel's limit on the words of one FutexWaitv.
const MaxFutexWaitv = 128

// ErrNoWaitv is returned by FutexWaitv on kernels before 5.16.
var ErrNoWaitv = errors.New("shm: futex_waitv is not supported by this kernel")

// futexWaitv is struct futex_waitv of <linux/futex.h>.
type futexWaitv struct {
	val      uint64
	uaddr    uint64
	flags    uint32
	reserved uint32
}

const (
	sysFutexWaitv = 449 // the same number on every architecture
	futex2SizeU32 = 0x02
)

// FutexWaitv sleeps until any of the words is woken or differs from its
// value, at most timeout (timeout < 0: no limit), with shared futexes, so
// that one thread can wait on the rings of several partitions at once. It
// returns nil when woken or when a word already differed (the caller
// rechecks), ErrTimeout when the timeout passed, ErrNoWaitv where the kernel
// lacks futex_waitv (Linux < 5.16).
func FutexWaitv(words []FutexWord, timeout time.Duration) error {
	if len(words) == 0 || len(words) > MaxFutexWaitv {
		return errors.New("shm: FutexWaitv needs 1 to 128 words")
	}
	var buf [MaxFutexWaitv]futexWaitv
	for i, w := range words {
		buf[i] = futexWaitv{val: uint64(w.Val), uaddr: uint64(uintptr(unsafe.Pointer(w.Addr))), flags: futex2SizeU32}
	}
	// The timeout of futex_waitv is absolute, on the clock it is given.
	var tsp unsafe.Pointer
	var ts unix.Timespec
	if timeout >= 0 {
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
			return err
		}
		ts = unix.NsecToTimespec(now.Nano() + int64(timeout))
		tsp = unsafe.Pointer(&ts)
	}
	_, _, e := unix.Syscall6(sysFutexWaitv, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(words)), 0,
		uintptr(tsp), uintptr(unix.CLOCK_MONOTONIC), 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	case unix.ENOSYS:
		return ErrNoWaitv
	}
	return e
}
