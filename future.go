package diaspora

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Future is the result of an asynchronous operation (Push, Pull, Flush).
type Future[T any] interface {
	// Wait blocks until the result is ready or the timeout expires. A negative
	// timeout blocks until done; on expiry it returns an error wrapping
	// ErrTimeout and the same future may be waited again.
	Wait(timeout time.Duration) (T, error)
	// Completed reports whether the result is ready.
	Completed() bool
}

// Promise is the writable side of a Future, for drivers: the driver keeps the
// Promise, hands out Future and calls Set once the result is known.
type Promise[T any] struct {
	done chan struct{}
	set  atomic.Bool
	v    T
	err  error
}

// NewPromise returns a promise whose future is not yet completed.
func NewPromise[T any]() *Promise[T] {
	return &Promise[T]{done: make(chan struct{})}
}

// Future returns the readable side of p. It allocates nothing.
func (p *Promise[T]) Future() Future[T] { return (*promiseFuture[T])(p) }

// Set completes the future with (v, err) and wakes every waiter. The first
// call wins; Set reports whether this call did.
func (p *Promise[T]) Set(v T, err error) bool {
	if !p.set.CompareAndSwap(false, true) {
		return false
	}
	p.v, p.err = v, err
	close(p.done)
	return true
}

// promiseFuture is the Future view of a Promise.
type promiseFuture[T any] Promise[T]

func (f *promiseFuture[T]) Wait(timeout time.Duration) (T, error) {
	select {
	case <-f.done:
		return f.v, f.err
	default:
	}
	if timeout < 0 {
		<-f.done
		return f.v, f.err
	}
	var zero T
	if timeout == 0 {
		return zero, timeoutError(timeout)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return f.v, f.err
	case <-t.C:
		return zero, timeoutError(timeout)
	}
}

func (f *promiseFuture[T]) Completed() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// timeoutError is the error of a Wait that expired after d.
func timeoutError(d time.Duration) error {
	return fmt.Errorf("diaspora: wait of %v: %w", d, ErrTimeout)
}

// ReadyFuture returns an already completed future holding (v, err).
func ReadyFuture[T any](v T, err error) Future[T] { return readyFuture[T]{v, err} }

type readyFuture[T any] struct {
	v   T
	err error
}

func (f readyFuture[T]) Wait(time.Duration) (T, error) { return f.v, f.err }
func (f readyFuture[T]) Completed() bool               { return true }
