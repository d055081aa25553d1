package diaspora_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

func TestFutureWaitTimesOutThenCanBeWaitedAgain(t *testing.T) {
	p := diaspora.NewPromise[int]()
	f := p.Future()
	start := time.Now()
	if v, err := f.Wait(20 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
		t.Fatalf("Wait before Set: expected ErrTimeout, got (%d, %v)", v, err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("Wait(20ms): expected to wait at least 20ms, waited %v", el)
	}
	if f.Completed() {
		t.Fatalf("Completed before Set: expected false, got true")
	}
	if !p.Set(42, nil) {
		t.Fatalf("first Set: expected true, got false")
	}
	if v, err := f.Wait(time.Second); v != 42 || err != nil {
		t.Fatalf("Wait after Set: expected (42, nil), got (%d, %v)", v, err)
	}
	if !f.Completed() {
		t.Fatalf("Completed after Set: expected true, got false")
	}
}

func TestFutureNegativeTimeoutBlocksUntilDone(t *testing.T) {
	p := diaspora.NewPromise[string]()
	go func() {
		time.Sleep(30 * time.Millisecond)
		p.Set("done", nil)
	}()
	if v, err := p.Future().Wait(-1); v != "done" || err != nil {
		t.Fatalf("Wait(-1): expected (done, nil), got (%q, %v)", v, err)
	}
}

func TestPromiseFirstSetWinsAndWakesAllWaiters(t *testing.T) {
	p := diaspora.NewPromise[int]()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Future().Wait(-1)
		}()
	}
	if !p.Set(1, boom) || p.Set(2, nil) {
		t.Fatalf("Set twice: expected (true, false)")
	}
	wg.Wait()
	for i, err := range errs {
		if err != boom {
			t.Fatalf("waiter %d: expected the first Set's error, got %v", i, err)
		}
	}
}

func TestReadyFutureIsCompleted(t *testing.T) {
	f := diaspora.ReadyFuture[diaspora.EventID](7, nil)
	if v, err := f.Wait(0); !f.Completed() || v != 7 || err != nil {
		t.Fatalf("ReadyFuture: expected completed (7, nil), got %v (%d, %v)", f.Completed(), v, err)
	}
}
