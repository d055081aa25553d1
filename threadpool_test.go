package diaspora_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/diaspora-shm/diaspora"
	"go.uber.org/goleak"
)

func TestThreadCountZeroRunsWorkInline(t *testing.T) {
	p := diaspora.NewGoroutinePool(0)
	defer p.Close()
	ran := false
	p.PushWork(func() { ran = true }, 0)
	if !ran {
		t.Fatalf("PushWork on a pool of 0 goroutines: expected the work done on return, it was not")
	}
}

func TestHigherPriorityRunsFirst(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := diaspora.NewGoroutinePool(1)
	release := make(chan struct{})
	started := make(chan struct{})
	p.PushWork(func() { close(started); <-release }, 0) // keeps the only goroutine busy
	<-started
	var mu sync.Mutex
	var order []int
	for i, prio := range []uint64{1, 5, 3, 5, 0} {
		p.PushWork(func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}, prio)
	}
	if n := p.Size(); n != 5 {
		t.Fatalf("Size with 5 queued: expected 5, got %d", n)
	}
	close(release)
	p.Close()
	want := []int{1, 3, 2, 0, 4} // priority 5 (FIFO), 3, 1, 0
	if len(order) != len(want) {
		t.Fatalf("run order: expected %v, got %v", want, order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("run order: expected %v, got %v", want, order)
		}
	}
}

func TestCloseRunsQueuedWorkAndLeaksNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := diaspora.NewGoroutinePool(4)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				p.PushWork(func() { n.Add(1) }, 0)
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: unexpected error %v", err)
	}
	if got := n.Load(); got != 800 {
		t.Fatalf("works run by Close: expected 800, got %d", got)
	}
	ran := false
	p.PushWork(func() { ran = true }, 0)
	if !ran {
		t.Fatalf("PushWork after Close: expected the work run inline, it was not")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: unexpected error %v", err)
	}
}

func TestZeroThreadPoolRunsWorkInline(t *testing.T) {
	var tp diaspora.ThreadPool
	ran := false
	tp.PushWork(func() { ran = true }, 0)
	if tp.Valid() || !ran || tp.Size() != 0 {
		t.Fatalf("zero ThreadPool: expected invalid, inline work, size 0; got valid=%v ran=%v size=%d", tp.Valid(), ran, tp.Size())
	}
}
