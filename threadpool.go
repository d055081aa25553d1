package diaspora

import (
	"container/heap"
	"fmt"
	"io"
	"sync"
)

// ThreadPool is the user-facing handle of a ThreadPoolInterface; producers
// and consumers run their work on one. The zero value is invalid and runs
// pushed work inline.
type ThreadPool struct {
	p ThreadPoolInterface
}

// NewThreadPool wraps a driver's thread pool; a nil p gives the invalid pool.
func NewThreadPool(p ThreadPoolInterface) ThreadPool { return ThreadPool{p} }

// Valid reports whether the pool wraps an implementation.
func (t ThreadPool) Valid() bool { return t.p != nil }

// Interface returns the wrapped implementation (nil when invalid).
func (t ThreadPool) Interface() ThreadPoolInterface { return t.p }

// ThreadCount returns the number of goroutines; 0 when invalid.
func (t ThreadPool) ThreadCount() ThreadCount {
	if t.p == nil {
		return 0
	}
	return t.p.ThreadCount()
}

// PushWork queues work; a higher priority runs first. On the invalid pool the
// work runs inline.
func (t ThreadPool) PushWork(work func(), priority uint64) {
	if t.p == nil {
		work()
		return
	}
	t.p.PushWork(work, priority)
}

// Size returns the number of queued works not yet started.
func (t ThreadPool) Size() int {
	if t.p == nil {
		return 0
	}
	return t.p.Size()
}

// Close stops the pool if its implementation is an io.Closer (a
// GoroutinePool is); otherwise it does nothing.
func (t ThreadPool) Close() error {
	if c, ok := t.p.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// GoroutinePool is a ThreadPoolInterface any driver may use: a fixed number of
// goroutines take work from a priority queue, higher priority first and in
// push order among equal priorities. With a count of 0, PushWork runs the work
// inline in the caller. It is safe for concurrent use.
type GoroutinePool struct {
	count  ThreadCount
	mu     sync.Mutex
	cond   sync.Cond
	queue  workQueue
	seq    uint64
	closed bool
	wg     sync.WaitGroup
}

// NewGoroutinePool starts count goroutines (none when count <= 0).
func NewGoroutinePool(count ThreadCount) *GoroutinePool {
	p := &GoroutinePool{count: max(count, 0)}
	p.cond.L = &p.mu
	for range int(p.count) {
		p.wg.Add(1)
		go p.run()
	}
	return p
}

// ThreadCount returns the number of goroutines.
func (p *GoroutinePool) ThreadCount() ThreadCount { return p.count }

// PushWork queues work at the given priority; when the pool has no goroutine
// or is closed, work runs inline before PushWork returns.
func (p *GoroutinePool) PushWork(work func(), priority uint64) {
	if p.count == 0 {
		work()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		work()
		return
	}
	heap.Push(&p.queue, workItem{work: work, priority: priority, seq: p.seq})
	p.seq++
	p.mu.Unlock()
	p.cond.Signal()
}

// Size returns the number of queued works not yet started.
func (p *GoroutinePool) Size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// Close runs the work still queued, then stops every goroutine of the pool
// and waits for them. Later PushWork calls run inline. Close must not be
// called from a work item of the same pool. It is idempotent.
func (p *GoroutinePool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
	return nil
}

// String describes the pool for logs.
func (p *GoroutinePool) String() string {
	return fmt.Sprintf("GoroutinePool(%d goroutines, %d queued)", p.count, p.Size())
}

func (p *GoroutinePool) run() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for p.queue.Len() == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.queue.Len() == 0 {
			p.mu.Unlock()
			return
		}
		it := heap.Pop(&p.queue).(workItem)
		p.mu.Unlock()
		it.work()
	}
}

type workItem struct {
	work     func()
	priority uint64
	seq      uint64
}

// workQueue is a heap of work items: highest priority first, then lowest seq.
type workQueue []workItem

func (q workQueue) Len() int { return len(q) }
func (q workQueue) Less(i, j int) bool {
	if q[i].priority != q[j].priority {
		return q[i].priority > q[j].priority
	}
	return q[i].seq < q[j].seq
}
func (q workQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *workQueue) Push(x any)   { *q = append(*q, x.(workItem)) }
func (q *workQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = workItem{}
	*q = old[:len(old)-1]
	return it
}
