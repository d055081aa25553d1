package diaspora

import (
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"
)

// Consumer is the user-facing handle of a consumer, from
// TopicHandle.Consumer. The zero value is invalid.
type Consumer struct {
	c ConsumerInterface
}

// Valid reports whether the consumer wraps an implementation.
func (c Consumer) Valid() bool { return c.c != nil }

// Interface returns the wrapped implementation (nil when invalid).
func (c Consumer) Interface() ConsumerInterface { return c.c }

// Name returns the consumer's name.
func (c Consumer) Name() string {
	if c.c == nil {
		return ""
	}
	return c.c.Name()
}

// Topic returns the topic the consumer reads.
func (c Consumer) Topic() TopicHandle {
	if c.c == nil {
		return TopicHandle{}
	}
	return TopicHandle{c.c.Topic()}
}

// BatchSize returns the consumer's batch size.
func (c Consumer) BatchSize() BatchSize {
	if c.c == nil {
		return 0
	}
	return c.c.BatchSize()
}

// MaxNumBatches returns the consumer's bound on pending batches.
func (c Consumer) MaxNumBatches() MaxNumBatches {
	if c.c == nil {
		return 0
	}
	return c.c.MaxNumBatches()
}

// ThreadPool returns the pool the consumer runs its work on.
func (c Consumer) ThreadPool() ThreadPool {
	if c.c == nil {
		return ThreadPool{}
	}
	return ThreadPool{c.c.ThreadPool()}
}

// DataSelector returns the consumer's selector; nil for metadata only.
func (c Consumer) DataSelector() DataSelector {
	if c.c == nil {
		return nil
	}
	return c.c.DataSelector()
}

// DataAllocator returns the consumer's allocator; nil when data points into
// the driver's memory.
func (c Consumer) DataAllocator() DataAllocator {
	if c.c == nil {
		return nil
	}
	return c.c.DataAllocator()
}

// Pull asks for the next event; the future gives it.
func (c Consumer) Pull() Future[Event] {
	if c.c == nil {
		return ReadyFuture(Event{}, errInvalid("Consumer"))
	}
	return c.c.Pull()
}

// Events iterates over the events as they come, for use with range:
//
//	for ev, err := range c.Events(time.Second) { ... }
//
// It ends when no event comes within timeout (negative: wait forever), or on
// an event whose ID is NoMoreEvents, which it does not yield. Any other error
// is yielded once, with the invalid Event, and ends the iteration.
func (c Consumer) Events(timeout time.Duration) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if c.c == nil {
			yield(Event{}, errInvalid("Consumer"))
			return
		}
		if bc, ok := c.c.(BatchConsumerInterface); ok {
			eventsInBatches(bc, batchLen(c.c.BatchSize()), timeout, yield)
			return
		}
		for {
			ev, err := c.c.Pull().Wait(timeout)
			switch {
			case errors.Is(err, ErrTimeout):
				return
			case err != nil:
				yield(Event{}, err)
				return
			case ev.ID() == NoMoreEvents:
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// batchLen is how many events Events and Process take per batch.
func batchLen(b BatchSize) int {
	if b > 0 {
		return min(int(b), 4096)
	}
	return 64
}

// eventsInBatches is Events over a BatchConsumerInterface: the events a
// loop that stops early did not see go back to the consumer.
func eventsInBatches(bc BatchConsumerInterface, n int, timeout time.Duration, yield func(Event, error) bool) {
	buf := make([]Event, n)
	// rest is what the loop's body has not seen of the batch: given back
	// however the loop ends, a panic of its body included.
	var rest []Event
	defer func() {
		if len(rest) > 0 {
			bc.Unread(rest)
		}
		clear(buf)
	}()
	for {
		k, err := bc.PullBatch(buf, timeout)
		switch {
		case errors.Is(err, ErrTimeout):
			return
		case err != nil:
			yield(Event{}, err)
			return
		}
		for i, ev := range buf[:k] {
			if ev.ID() == NoMoreEvents {
				rest = nil
				return
			}
			rest = buf[i+1 : k]
			if !yield(ev, nil) {
				return
			}
		}
		rest = nil
		// buf is not cleared between batches (the next PullBatch
		// overwrites it, and clearing pointers pays the write barrier's
		// bulk path while the collector marks): at most one batch stays
		// referenced until then, and the deferred clear drops the last.
	}
}

// Process pulls events and runs p on each, on pool (the consumer's own pool
// when pool is the zero ThreadPool), until max events were pulled, p returns
// an error (ErrStopProcessing to stop quietly), no event comes within timeout
// (negative: wait forever), or an event's ID is NoMoreEvents. It waits for
// every p it started to return, then returns the first error of p other than
// ErrStopProcessing, or the error of a failed pull.
func (c Consumer) Process(p EventProcessor, timeout time.Duration, max NumEvents, pool ThreadPool) error {
	if c.c == nil {
		return errInvalid("Consumer")
	}
	if p == nil {
		return fmt.Errorf("diaspora: consumer %q: Process: %w: nil EventProcessor", c.c.Name(), ErrInvalidArgument)
	}
	tp := pool.p
	if tp == nil {
		tp = c.c.ThreadPool()
	}
	return c.c.Process(p, timeout, max, tp)
}

// Unsubscribe removes the consumer's name from the topic.
func (c Consumer) Unsubscribe() error {
	if c.c == nil {
		return errInvalid("Consumer")
	}
	return c.c.Unsubscribe()
}

// Close releases the consumer; the data of its unacknowledged events without
// an allocator becomes invalid.
func (c Consumer) Close() error {
	if c.c == nil {
		return errInvalid("Consumer")
	}
	return c.c.Close()
}

// ProcessEvents implements ConsumerInterface.Process over c.Pull, with the
// behaviour documented on Consumer.Process, for drivers that have nothing
// faster. A nil pool runs p inline.
func ProcessEvents(c ConsumerInterface, p EventProcessor, timeout time.Duration, max NumEvents, pool ThreadPoolInterface) error {
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		stop.Store(true)
		if errors.Is(err, ErrStopProcessing) {
			return
		}
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	tp := NewThreadPool(pool)
	inline := tp.ThreadCount() == 0
	run := func(ev Event) {
		if inline {
			// No pool thread: run p here, without a closure per event.
			if err := p(ev); err != nil {
				fail(err)
			}
			return
		}
		wg.Add(1)
		tp.PushWork(func() {
			defer wg.Done()
			if err := p(ev); err != nil {
				fail(err)
			}
		}, 0)
	}
	if bc, ok := c.(BatchConsumerInterface); ok {
		buf := make([]Event, batchLen(c.BatchSize()))
		defer clear(buf)
	batches:
		for n := NumEvents(0); n < max && !stop.Load(); {
			want := len(buf)
			if rem := max - n; rem < NumEvents(want) {
				want = int(rem)
			}
			k, err := bc.PullBatch(buf[:want], timeout)
			if errors.Is(err, ErrTimeout) {
				break
			}
			if err != nil {
				fail(fmt.Errorf("diaspora: consumer %q: pull: %w", c.Name(), err))
				break
			}
			for i, ev := range buf[:k] {
				if ev.ID() == NoMoreEvents {
					break batches
				}
				if stop.Load() {
					bc.Unread(buf[i:k]) // not processed: the next pull has them
					break batches
				}
				run(ev)
				n++
			}
			clear(buf[:k])
		}
		wg.Wait()
		return firstErr
	}
	for n := NumEvents(0); n < max && !stop.Load(); n++ {
		ev, err := c.Pull().Wait(timeout)
		if errors.Is(err, ErrTimeout) {
			break
		}
		if err != nil {
			fail(fmt.Errorf("diaspora: consumer %q: pull: %w", c.Name(), err))
			break
		}
		if ev.ID() == NoMoreEvents {
			break
		}
		run(ev)
	}
	wg.Wait()
	return firstErr
}
