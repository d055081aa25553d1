package ring

import (
	"errors"
	"fmt"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

// WaitAny sleeps until a record may be there for any of the readers (each
// usually on its own ring), at most timeout (timeout < 0: no limit), with
// one futex_waitv over the rings' data words: a consumer of several
// partitions sleeps without polling. It consumes nothing; the caller reads
// with TryNext afterwards. It returns nil when a reader may have a record
// (or an error to report), ErrTimeout when the timeout passed. On kernels
// without futex_waitv it sleeps on the first ring in short slices.
func WaitAny(rds []*Reader, timeout time.Duration) error {
	if len(rds) == 0 {
		return fmt.Errorf("ring: WaitAny of no readers")
	}
	if len(rds) > shm.MaxFutexWaitv {
		rds = rds[:shm.MaxFutexWaitv]
	}
	var words [shm.MaxFutexWaitv]shm.FutexWord
	// The Dekker protocol of nextSlow, on every ring: load the sequence,
	// announce a waiter, then look for a record; a producer committing after
	// the look sees the waiter and bumps the sequence.
	for i, rd := range rds {
		if rd.closed || rd.r.closed.Load() {
			return ErrClosed
		}
		h := rd.r.hdr
		words[i] = shm.FutexWord{Addr: p32(h, OffDataSeq), Val: load32(h, OffDataSeq)}
		add32(h, OffDataWaiters, 1)
	}
	defer func() {
		for _, rd := range rds {
			add32(rd.r.hdr, OffDataWaiters, -1)
		}
	}()
	d := maxSleep
	for _, rd := range rds {
		ready, pending := rd.ready()
		if ready {
			return nil
		}
		if pending {
			d = deadGrace // stuck claims need rechecking
		}
	}
	if timeout >= 0 && timeout < d {
		d = timeout
	}
	err := shm.FutexWaitv(words[:len(rds)], d)
	if errors.Is(err, shm.ErrNoWaitv) {
		err = shm.FutexWait(words[0].Addr, words[0].Val, min(d, time.Millisecond))
	}
	if errors.Is(err, shm.ErrTimeout) {
		if timeout >= 0 && d >= timeout {
			return ErrTimeout
		}
		return nil // a bounded sleep ended: the caller rechecks
	}
	return err
}

// ready says whether the next step would return a record or an error,
// without consuming it (padding it passes is skipped for good); pending
// says a claim is stuck at the reader's position.
func (rd *Reader) ready() (ready, pending bool) {
	pos, last, have := rd.pos, rd.lastID, rd.haveID
	var e Entry
	st, err := rd.step(&e)
	if st == stGot {
		rd.pos, rd.lastID, rd.haveID = pos, last, have
	}
	return err != nil || st == stGot, st == stPending
}
