package driver

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// A ring file that another process truncates while it is mapped makes the
// next access to the lost pages raise SIGBUS, which would kill the process.
// Every entry point that touches a ring arms debug.SetPanicOnFault and turns
// such a fault into an error naming the partition:
//
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
//	defer recoverFault(&err, p)
//
// The cost is a few nanoseconds per call, paid per batch or per pull.

// recoverFault, deferred directly, converts a memory-fault panic into *err;
// other panics go on.
func recoverFault(err *error, where fmt.Stringer) {
	if r := recover(); r != nil {
		*err = faultError(r, where)
	}
}

// faultError is the error for a recovered memory fault; any other panic
// value is re-raised. Deferred closures call it with their own recover(),
// which only works when called by the deferred function itself.
func faultError(r any, where fmt.Stringer) error {
	if re, ok := r.(runtime.Error); ok {
		// A fault near address 0 is a nil dereference, a bug to crash on,
		// not a lost page of a mapping.
		if f, ok := re.(interface{ Addr() uintptr }); ok && f.Addr() >= 1<<16 {
			return fmt.Errorf("shm driver: %s: memory fault at %#x reading the ring (was the ring file truncated?): %v", where, f.Addr(), re)
		}
	}
	panic(r)
}

// armFaults is debug.SetPanicOnFault(true), returning the previous setting
// for the deferred restore.
func armFaults() bool { return debug.SetPanicOnFault(true) }

type stringer string

func (s stringer) String() string { return string(s) }
