package main

/*
#include "internal.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
)

// The handle table: C holds numbers, never Go pointers (the cgo rules), and
// a number is never reused, so a closed or released handle is an error
// forever rather than someone else's object.
var handles = struct {
	sync.RWMutex
	m    map[uint64]any
	next uint64
}{m: map[uint64]any{}}

func newHandle(v any) uint64 {
	handles.Lock()
	handles.next++
	h := handles.next
	handles.m[h] = v
	handles.Unlock()
	return h
}

// newHandles makes a handle for each of objs under one lock, passing each
// to put.
func newHandles[T any](objs []T, put func(i int, h uint64)) {
	handles.Lock()
	for i, v := range objs {
		handles.next++
		handles.m[handles.next] = v
		put(i, handles.next)
	}
	handles.Unlock()
}

// errHandle marks a bad handle, DSHM_EHANDLE.
type errHandle struct{ msg string }

func (e errHandle) Error() string { return "diaspora_shm: " + e.msg }

func kindName(v any) string {
	switch v.(type) {
	case *cDriver:
		return "driver"
	case *cTopic:
		return "topic"
	case *cProducer:
		return "producer"
	case *cConsumer:
		return "consumer"
	case *cEvent:
		return "event"
	case *cBatch:
		return "batch"
	case *cFuture:
		return "future"
	case *cClaim:
		return "claim"
	case *cPool:
		return "thread pool"
	}
	return fmt.Sprintf("%T", v)
}

// lookup returns the live object of handle h, which must be a T.
func lookup[T any](h C.uint64_t, what string) (T, error) {
	handles.RLock()
	v, ok := handles.m[uint64(h)]
	handles.RUnlock()
	return checkKind[T](v, ok, h, what)
}

// take removes handle h, which must be a T, and returns its object.
func take[T any](h C.uint64_t, what string) (T, error) {
	handles.Lock()
	v, ok := handles.m[uint64(h)]
	t, err := checkKind[T](v, ok, h, what)
	if err == nil {
		delete(handles.m, uint64(h))
	}
	handles.Unlock()
	return t, err
}

func checkKind[T any](v any, ok bool, h C.uint64_t, what string) (T, error) {
	var zero T
	if !ok {
		if h == 0 {
			return zero, errHandle{fmt.Sprintf("%s handle 0: never made (a failed open leaves its handle 0)", what)}
		}
		return zero, errHandle{fmt.Sprintf("%s handle %d is not live: closed, released or never made", what, uint64(h))}
	}
	t, isT := v.(T)
	if !isT {
		return zero, errHandle{fmt.Sprintf("handle %d is a %s, not a %s", uint64(h), kindName(v), what)}
	}
	return t, nil
}

// status is the DSHM_* code of err.
func status(err error) C.int {
	var he errHandle
	switch {
	case err == nil:
		return C.DSHM_OK
	case errors.As(err, &he):
		return C.DSHM_EHANDLE
	case errors.Is(err, diaspora.ErrTimeout):
		return C.DSHM_ETIMEOUT
	case errors.Is(err, diaspora.ErrClosed):
		return C.DSHM_ECLOSED
	case errors.Is(err, diaspora.ErrTopicNotFound):
		return C.DSHM_ENOTFOUND
	case errors.Is(err, diaspora.ErrTopicExists):
		return C.DSHM_EEXISTS
	case errors.Is(err, diaspora.ErrInvalidJSON):
		return C.DSHM_EJSON
	case errors.Is(err, diaspora.ErrInvalidMetadata):
		return C.DSHM_EINVALID
	case errors.Is(err, diaspora.ErrNotSupported):
		return C.DSHM_ENOTSUP
	case errors.Is(err, errRange):
		return C.DSHM_ERANGE
	case errors.Is(err, diaspora.ErrInvalidArgument):
		return C.DSHM_EINVAL
	}
	return C.DSHM_ERROR
}

var errRange = errors.New("buffer too small")

// fail records err as the calling thread's last error and returns its code.
// A cgo callback runs on the C thread that called in, so the thread-local
// message in shim.c is that thread's.
func fail(err error) C.int {
	setError(err.Error())
	return status(err)
}

func setError(msg string) {
	if len(msg) == 0 {
		msg = "diaspora_shm: unknown error"
	}
	C.dshm__set_error((*C.char)(unsafe.Pointer(unsafe.StringData(msg))), C.size_t(len(msg)))
}

// recoverPanic turns a panic of the Go half into an error of the call: no
// call may take the process down.
func recoverPanic(st *C.int) {
	if r := recover(); r != nil {
		*st = fail(fmt.Errorf("diaspora_shm: internal error: %v", r))
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("diaspora_shm: %w: "+format, append([]any{diaspora.ErrInvalidArgument}, args...)...)
}

// goString reads a required C string argument.
func goString(p *C.char, what string) (string, error) {
	if p == nil {
		return "", invalid("%s is NULL", what)
	}
	return C.GoString(p), nil
}

// jsonArg parses an optional JSON argument; NULL is the zero Metadata.
func jsonArg(p *C.char, what string) (diaspora.Metadata, error) {
	if p == nil {
		return diaspora.Metadata{}, nil
	}
	md, err := diaspora.NewMetadata(C.GoString(p))
	if err != nil {
		return md, fmt.Errorf("diaspora_shm: %s: %w", what, err)
	}
	return md, nil
}

// timeout converts milliseconds, negative for ever.
func timeout(ms C.int64_t) time.Duration {
	if ms < 0 {
		return -1
	}
	if int64(ms) > int64(time.Duration(1<<62)/time.Millisecond) {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// writeText copies s and a NUL into buf and its length to *length, or
// reports how much room it needs.
func writeText(buf *C.char, cap C.size_t, length *C.size_t, s []byte, what string) error {
	if length == nil {
		return invalid("%s: the length pointer is NULL", what)
	}
	*length = C.size_t(len(s))
	if uint64(cap) < uint64(len(s))+1 || buf == nil {
		return fmt.Errorf("diaspora_shm: %s: %w: it takes %d bytes and a NUL, the buffer has %d", what, errRange, len(s), uint64(cap))
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(s)+1)
	copy(dst, s)
	dst[len(s)] = 0
	return nil
}
