package ring

import (
	"errors"
	"testing"
	"time"
)

// TestWaitAnySleepsOnEveryRing: one sleeper over the readers of three rings
// is woken by a commit on any of them, consumes nothing, and times out when
// nothing comes.
func TestWaitAnySleepsOnEveryRing(t *testing.T) {
	var rings []*Ring
	var rds []*Reader
	for i := 0; i < 3; i++ {
		r := newTestRing(t, Options{Capacity: MinCapacity})
		rd, err := r.Attach("w")
		if err != nil {
			t.Fatal(err)
		}
		rings, rds = append(rings, r), append(rds, rd)
	}
	if err := WaitAny(rds, 20*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("WaitAny over empty rings: got %v, want ErrTimeout", err)
	}
	for _, which := range []int{2, 0} {
		done := make(chan error, 1)
		go func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				err := WaitAny(rds, time.Until(deadline))
				if err != nil {
					done <- err
					return
				}
				for _, rd := range rds {
					if _, ok, _ := rd.TryNext(); ok {
						done <- nil
						return
					}
				}
			}
			done <- ErrTimeout
		}()
		time.Sleep(20 * time.Millisecond) // let it fall asleep
		var c Claim
		if err := push(rings[which], &c, []RecordSize{{Meta: 8, Data: 16}}, 1, 0, time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitAny woken by a record on ring %d: %v", which, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("WaitAny not woken by a record on ring %d", which)
		}
	}
	// A record already there: WaitAny returns at once and leaves it.
	var c Claim
	push(rings[1], &c, []RecordSize{{Meta: 8, Data: 16}}, 1, 1, time.Second)
	if err := WaitAny(rds, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := rds[1].TryNext(); !ok || err != nil {
		t.Fatalf("the record WaitAny saw was consumed (ok=%v, err=%v)", ok, err)
	}
}
