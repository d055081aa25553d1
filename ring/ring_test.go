package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/shm"
)

func TestRandomSizesThroughManyWrapsArriveIntactInOrder(t *testing.T) {
	r := newTestRing(t, Options{Capacity: MinCapacity, FirstID: 1000})
	rd, err := r.Attach("checker")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	errc := make(chan error, 1)
	done := make(chan struct{})
	t.Cleanup(func() { <-done }) // runs before the ring is closed
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		var c Claim
		var sizes []RecordSize
		for seq := uint64(0); seq < n; {
			k := min(uint64(1+rng.IntN(4)), n-seq)
			sizes = sizes[:0]
			for range k {
				tot := 16 + rng.IntN(3*1024)
				m := rng.IntN(tot - 15)
				sizes = append(sizes, RecordSize{Meta: m, Data: tot - m})
			}
			if err := push(r, &c, sizes, 0, seq, 10*time.Second); err != nil {
				errc <- err
				return
			}
			seq += k
		}
		errc <- nil
	}()
	var last uint64
	for i := uint64(0); i < n; i++ {
		e, err := rd.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		_, seq, err := check(e)
		if err != nil {
			t.Fatal(err)
		}
		if seq != i || e.ID != 1000+i {
			t.Fatalf("record %d: got seq %d ID %d", i, seq, e.ID)
		}
		rd.Release(e.End)
		last = e.End
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if laps := last / uint64(r.Capacity()); laps < 100 {
		t.Fatalf("only %d wrap-arounds, want >= 100", laps)
	}
}

func TestProducerAndReaderProcessesEveryRecordOnceInOrder(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, "mp", Options{Capacity: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const nprod, nread, n = 3, 3, 20000
	var readers []*child
	for range nread {
		c := startChild(t, "reader", dir, "mp", strconv.Itoa(nprod), strconv.Itoa(n))
		if s := c.line(t); s != "ready" {
			t.Fatalf("reader said %q, want ready", s)
		}
		readers = append(readers, c)
	}
	var prods []*child
	for p := range nprod {
		prods = append(prods, startChild(t, "producer", dir, "mp", strconv.Itoa(p), strconv.Itoa(n)))
	}
	for _, p := range prods {
		p.wait(t)
	}
	r.MarkComplete()
	for _, c := range readers {
		if s, want := c.line(t), fmt.Sprintf("ok %d", nprod*n); s != want {
			t.Fatalf("reader said %q, want %q", s, want)
		}
		c.wait(t)
	}
}

func TestSleepingReaderIsWokenForEveryRecord(t *testing.T) {
	// Strict hand-offs: the producer commits record i+1 only once the reader
	// has taken record i, so the reader (SpinTime 0) is about to sleep or
	// asleep on the futex every time; a lost wakeup shows as ErrTimeout.
	r := newTestRing(t, Options{})
	rd, err := r.Attach("sleeper")
	if err != nil {
		t.Fatal(err)
	}
	rd.SetSpin(0)
	n := 1000000
	if raceEnabled || testing.Short() {
		n = 100000
	}
	var taken atomic.Int64
	errc := make(chan error, 1)
	done := make(chan struct{})
	t.Cleanup(func() { <-done }) // runs before the ring is closed
	go func() {
		defer close(done)
		var c Claim
		sz := []RecordSize{{Data: 16}}
		for i := range n {
			for taken.Load() < int64(i) {
				runtime.Gosched()
			}
			if err := push(r, &c, sz, 0, uint64(i), 5*time.Second); err != nil {
				errc <- fmt.Errorf("push %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		e, err := rd.Next(5 * time.Second)
		if err != nil {
			taken.Store(int64(n)) // let the producer finish
			t.Fatalf("hand-off %d: %v", i, err)
		}
		if _, seq, err := check(e); err != nil || seq != uint64(i) {
			taken.Store(int64(n))
			t.Fatalf("hand-off %d: seq %d, %v", i, seq, err)
		}
		rd.Release(e.End)
		taken.Store(int64(i + 1))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// fillUp pushes 1 KiB records until the ring is full.
func fillUp(t *testing.T, r *Ring) {
	t.Helper()
	var c Claim
	for i := 0; ; i++ {
		err := push(r, &c, []RecordSize{{Data: 1000}}, 0, uint64(i), 0)
		if errors.Is(err, ErrFull) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestFullRingErrorNamesBlockingReader(t *testing.T) {
	r := newTestRing(t, Options{})
	rd, err := r.Attach("slowpoke")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	fillUp(t, r)
	var c Claim
	err = r.Claim(&c, []RecordSize{{Data: 1000}}, 20*time.Millisecond)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	pid := fmt.Sprintf("pid %d", os.Getpid())
	if !strings.Contains(err.Error(), `"slowpoke"`) || !strings.Contains(err.Error(), pid) {
		t.Fatalf("ErrFull should name slot \"slowpoke\" and %s: %v", pid, err)
	}
	// reading and releasing makes room
	e, err := rd.Next(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rd.Release(e.End)
	if err := push(r, &c, []RecordSize{{Data: 1000}}, 0, 0, time.Second); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestKilledReaderProcessUnblocksFullProducer(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, "k", Options{Capacity: MinCapacity})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := startChild(t, "holdreader", dir, "k")
	if s := c.line(t); s != "ready" {
		t.Fatalf("child said %q", s)
	}
	fillUp(t, r)
	done := make(chan error, 1)
	exited := make(chan struct{})
	t.Cleanup(func() { <-exited })
	go func() {
		defer close(exited)
		var cl Claim
		done <- push(r, &cl, []RecordSize{{Data: 1000}}, 0, 0, 30*time.Second)
	}()
	select {
	case err := <-done:
		t.Fatalf("claim on a full ring returned before the reader died: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	if err := <-done; err != nil {
		t.Fatalf("claim after the reader was killed: %v", err)
	}
	if s := r.Stats(); len(s.Slots) != 0 {
		t.Fatalf("dead slot still active: %+v", s.Slots)
	}
}

func TestKilledProducerProcessClaimIsSkipped(t *testing.T) {
	killedProducerIsSkipped(t, "claimhang", 1)
}

// killedProducerIsSkipped runs a child of role that claims (and never
// commits) claimed IDs between two records of ours: readers wait while it
// lives, then, once it is killed, skip its claim and read the record after
// it, whose ID is past the dead claim's (IDs are never reused).
func killedProducerIsSkipped(t *testing.T, role string, claimed uint64) {
	dir := t.TempDir()
	r, err := Create(dir, "kp", Options{Capacity: MinCapacity})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetAbandonTimeout(time.Hour) // only death may abandon the claim
	rd, err := r.Attach("r")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var c Claim
	if err := push(r, &c, []RecordSize{{Data: 20}}, 0, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, role, dir, "kp")
	if s := ch.line(t); s != "ready" {
		t.Fatalf("child said %q", s)
	}
	if err := push(r, &c, []RecordSize{{Data: 20}}, 0, 2, time.Second); err != nil {
		t.Fatal(err)
	}
	if e, err := rd.Next(time.Second); err != nil || e.ID != 0 {
		t.Fatalf("first record: %+v %v", e, err)
	}
	if _, ok, err := rd.TryNext(); ok || err != nil {
		t.Fatalf("a pending claim of a live producer must block: ok=%v err=%v", ok, err)
	}
	ch.cmd.Process.Signal(syscall.SIGKILL)
	ch.cmd.Wait()
	e, err := rd.Next(10 * time.Second)
	if err != nil {
		t.Fatalf("after the producer died: %v", err)
	}
	if _, seq, err := check(e); err != nil || seq != 2 || e.ID != 1+claimed {
		t.Fatalf("want the record after the dead claim (seq 2, ID %d), got seq %d ID %d %v", 1+claimed, seq, e.ID, err)
	}
}

func TestClaimDeadBeforeHeaderIsStampedAwayByScanning(t *testing.T) {
	r := newTestRing(t, Options{})
	r.SetAbandonTimeout(20 * time.Millisecond)
	rd, err := r.Attach("r")
	if err != nil {
		t.Fatal(err)
	}
	var c Claim
	if err := push(r, &c, []RecordSize{{Data: 100}}, 0, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	// two claims that die between the tail CAS and the header CAS
	for _, L := range []uint64{512, 96} {
		pos, id := load16(r.hdr, OffTailPos)
		if !cas16(r.hdr, OffTailPos, pos, id, pos+L, id+1) {
			t.Fatal("tail moved")
		}
	}
	if err := push(r, &c, []RecordSize{{Data: 100}}, 0, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	for want := uint64(0); want < 2; want++ {
		e, err := rd.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("record %d: %v", want, err)
		}
		if _, seq, err := check(e); err != nil || seq != want {
			t.Fatalf("want seq %d, got %d %v", want, seq, err)
		}
	}
	// a producer whose header granule was stamped learns it
	pos, id := load16(r.hdr, OffTailPos)
	cas16(r.hdr, OffTailPos, pos, id, pos+64, id+1)
	if _, ok, _ := rd.TryNext(); ok {
		t.Fatal("nothing should be readable")
	}
	time.Sleep(30 * time.Millisecond)
	if _, ok, err := rd.TryNext(); ok || err != nil {
		t.Fatalf("TryNext over a stamped gap: ok=%v err=%v", ok, err)
	}
	w0, _ := load16(r.data, int(pos&r.mask))
	if w0 != pos|StatePadding {
		t.Fatalf("unwritten header at %d not stamped: word0 %x", pos, w0)
	}
	// the slow producer of that claim now tries to publish its header
	if err := r.publishClaimed(pos, 64); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("publishing a stamped claim: want ErrAbandoned, got %v", err)
	}
}

func TestSlowProducerInsideStampedGapIsToldAbandoned(t *testing.T) {
	// two claims whose headers are late: the reader stamps both; the second
	// producer must not be able to commit a record hidden in padding
	r := newTestRing(t, Options{})
	r.SetAbandonTimeout(10 * time.Millisecond)
	rd, _ := r.Attach("r")
	p1, id := load16(r.hdr, OffTailPos)
	cas16(r.hdr, OffTailPos, p1, id, p1+128, id+1)
	p2 := p1 + 128
	cas16(r.hdr, OffTailPos, p2, id+1, p2+64, id+2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, err := rd.TryNext(); ok || err != nil {
			t.Fatalf("TryNext: ok=%v err=%v", ok, err)
		}
		if rd.Position() == p2+64 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.publishClaimed(p2, 64); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("second late claim: want ErrAbandoned, got %v (reader at %d)", err, rd.Position())
	}
}

func TestStuckLiveClaimIsAbandonedAfterTimeoutAndCommitFails(t *testing.T) {
	r := newTestRing(t, Options{})
	r.SetAbandonTimeout(20 * time.Millisecond)
	rd, _ := r.Attach("r")
	var stuck, c Claim
	if err := r.Claim(&stuck, []RecordSize{{Data: 40}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := push(r, &c, []RecordSize{{Data: 40}}, 0, 5, 0); err != nil {
		t.Fatal(err)
	}
	e, err := rd.Next(10 * time.Second)
	if _, seq, cerr := check(e); err != nil || cerr != nil || seq != 5 {
		t.Fatalf("want the record after the stuck claim (seq 5), got %v %v seq %d", err, cerr, seq)
	}
	if err := stuck.Commit(); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("commit of an abandoned claim: want ErrAbandoned, got %v", err)
	}
}

func TestAbortedClaimIsSkipped(t *testing.T) {
	r := newTestRing(t, Options{})
	rd, _ := r.Attach("r")
	var c Claim
	if err := r.Claim(&c, []RecordSize{{Data: 50}, {Data: 50}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := push(r, &c, []RecordSize{{Data: 50}}, 0, 7, 0); err != nil {
		t.Fatal(err)
	}
	e, err := rd.Next(time.Second)
	if _, seq, cerr := check(e); err != nil || cerr != nil || seq != 7 || e.ID != 2 {
		t.Fatalf("want seq 7 ID 2 after the aborted pair, got %+v %v %v", e.ID, err, cerr)
	}
}

func TestBatchRecordsHaveConsecutiveIDsAndPositions(t *testing.T) {
	r := newTestRing(t, Options{FirstID: 5})
	rd, _ := r.Attach("r")
	var c Claim
	sizes := []RecordSize{{1, 16}, {0, 40}, {100, 17}}
	if err := push(r, &c, sizes, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	pos := uint64(0)
	for i, s := range sizes {
		e, err := rd.Next(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != 5+uint64(i) || e.Pos != pos || len(e.Meta) != s.Meta || len(e.Data) != s.Data {
			t.Fatalf("record %d: %+v", i, e)
		}
		pos = e.End
	}
	if pos != c.End() {
		t.Fatalf("last End %d, claim End %d", pos, c.End())
	}
}

func TestTooLargeRecordNamesSizes(t *testing.T) {
	r := newTestRing(t, Options{})
	var c Claim
	err := r.Claim(&c, []RecordSize{{Meta: 10, Data: r.MaxRecordSize()}}, 0)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "meta 10") {
		t.Fatalf("want ErrTooLarge naming meta 10, got %v", err)
	}
	if err := r.Claim(&c, []RecordSize{{Data: r.MaxRecordSize() - 32}}, 0); err != nil {
		t.Fatalf("MaxRecordSize record: %v", err)
	}
	c.Abort()
}

func TestEndOfStreamAfterCompleteAndCaughtUp(t *testing.T) {
	r := newTestRing(t, Options{})
	rd, _ := r.Attach("r")
	var c Claim
	push(r, &c, []RecordSize{{Data: 16}}, 0, 0, 0)
	r.MarkComplete()
	if _, err := rd.Next(time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(time.Second); !errors.Is(err, ErrEndOfStream) {
		t.Fatalf("want ErrEndOfStream, got %v", err)
	}
}

func TestNextTimesOut(t *testing.T) {
	r := newTestRing(t, Options{})
	rd, _ := r.Attach("r")
	if _, err := rd.Next(5 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
}

func TestSeekID(t *testing.T) {
	r := newTestRing(t, Options{FirstID: 100})
	rd, _ := r.Attach("r")
	var c Claim
	for i := range 10 {
		push(r, &c, []RecordSize{{Data: 16}}, 0, uint64(i), 0)
	}
	if err := rd.SeekID(105); err != nil {
		t.Fatal(err)
	}
	if e, err := rd.Next(time.Second); err != nil || e.ID != 105 {
		t.Fatalf("after SeekID(105): ID %d %v", e.ID, err)
	}
	if err := rd.SeekID(99); !errors.Is(err, ErrTooOld) {
		t.Fatalf("SeekID(99): want ErrTooOld, got %v", err)
	}
	if err := rd.SeekID(112); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		push(r, &c, []RecordSize{{Data: 16}}, 0, uint64(10+i), 0)
	}
	if e, err := rd.Next(time.Second); err != nil || e.ID != 112 {
		t.Fatalf("after SeekID(112): ID %d %v", e.ID, err)
	}
}

func TestDurableRingReusesOnlyArchivedSpace(t *testing.T) {
	r := newTestRing(t, Options{Durable: true})
	fillUp(t, r)
	var c Claim
	err := r.Claim(&c, []RecordSize{{Data: 1000}}, 10*time.Millisecond)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "archiver") {
		t.Fatalf("want ErrFull naming the archiver, got %v", err)
	}
	cur := r.NewCursor(0)
	e, err := cur.Next(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(5 * time.Millisecond)
		r.SetArchived(e.End)
	}()
	defer func() { <-done }() // the ring must not be closed under SetArchived
	if err := r.WaitArchived(e.End, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := push(r, &c, []RecordSize{{Data: 1000}}, 0, 0, 10*time.Second); err != nil {
		t.Fatalf("after SetArchived: %v", err)
	}
}

func TestAttachStartsAtOldestHeldRecordAndStatsShowSlots(t *testing.T) {
	r := newTestRing(t, Options{})
	var c Claim
	push(r, &c, []RecordSize{{Data: 16}}, 0, 0, 0)
	a, _ := r.Attach("a")
	push(r, &c, []RecordSize{{Data: 16}}, 0, 1, 0)
	b, _ := r.Attach("b")
	for _, rd := range []*Reader{a, b} {
		if e, err := rd.Next(time.Second); err != nil || e.ID != 0 {
			t.Fatalf("slot %d: want ID 0 (held by a), got %d %v", rd.Slot(), e.ID, err)
		}
	}
	s := r.Stats()
	if len(s.Slots) != 2 || s.Slots[0].Name != "a" || !s.Slots[1].Alive || s.TailID != 2 {
		t.Fatalf("stats: %+v", s)
	}
	a.Close()
	b.Close()
	if s := r.Stats(); len(s.Slots) != 0 {
		t.Fatalf("closed slots still active: %+v", s.Slots)
	}
}

func TestNoSlotWhenAllHeldAndDeadSlotsReclaimed(t *testing.T) {
	r := newTestRing(t, Options{ReaderSlots: 2})
	r.Attach("a")
	r.Attach("b")
	if _, err := r.Attach("c"); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("want ErrNoSlot, got %v", err)
	}
	// forge a dead owner in slot 0
	store64(r.hdr, r.slotOff(0)+SlotOffStart, shm.Self().Start+1)
	if rd, err := r.Attach("c"); err != nil || rd.Slot() != 0 {
		t.Fatalf("want the dead slot 0 reclaimed, got %v", err)
	}
}

func TestOpenRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	good, err := Create(dir, "good", Options{Capacity: MinCapacity, ReaderSlots: 4})
	if err != nil {
		t.Fatal(err)
	}
	good.Close()
	orig, _ := os.ReadFile(filepath.Join(dir, "good"))
	cases := map[string]func([]byte) []byte{
		"not a ring":   func(b []byte) []byte { return []byte("hello, world, this is not a ring file at all") },
		"empty":        func(b []byte) []byte { return nil },
		"truncated":    func(b []byte) []byte { return b[:len(b)-4096] },
		"next version": func(b []byte) []byte { b[OffVersion] = Version + 1; return b },
		"version 1":    func(b []byte) []byte { b[OffVersion] = 1; return b },
		"deleted":      func(b []byte) []byte { b[OffDeleted] = 2; return b },
		"capacity":     func(b []byte) []byte { b[OffCapacity+2] = 2; return b },
		"slots":        func(b []byte) []byte { b[OffReaderSlots] = 200; return b },
		"flags":        func(b []byte) []byte { b[OffFlags] = 6; return b },
		"tail align":   func(b []byte) []byte { b[OffTailPos] = 3; return b },
		"head > tail":  func(b []byte) []byte { b[OffHeadCache] = 16; return b },
		"slot state":   func(b []byte) []byte { b[HeaderBase] = 9; return b },
	}
	for name, f := range cases {
		b := f(append([]byte(nil), orig...))
		os.WriteFile(filepath.Join(dir, "bad"), b, 0600)
		r, err := Open(dir, "bad", shm.Trust{})
		if err == nil {
			r.Close()
			t.Errorf("%s: Open accepted it", name)
		} else if name != "empty" && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: want ErrCorrupt, got %v", name, err)
		}
	}
	if _, err := Open(dir, "missing", shm.Trust{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
	if _, err := Create(dir, "good", Options{Capacity: MinCapacity}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("want ErrExist, got %v", err)
	}
	if r, err := Open(dir, "good", shm.Trust{}); err != nil {
		t.Fatal(err)
	} else {
		r.Close()
	}
}

func TestConcurrentProducersAndAttachNeverLoseRecords(t *testing.T) {
	// readers attach and detach while producers run; every reader must see
	// a gap-free ID sequence from where it attached.
	r := newTestRing(t, Options{})
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	t.Cleanup(func() { once.Do(func() { close(stop) }); wg.Wait() })
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c Claim
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := push(r, &c, []RecordSize{{Data: 16 + int(i%300)}}, uint32(p), i, 50*time.Millisecond); err != nil && !errors.Is(err, ErrFull) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for round := range 30 {
		rd, err := r.Attach("a")
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for i := range 500 {
			e, err := rd.Next(5 * time.Second)
			if err != nil {
				t.Fatalf("round %d record %d: %v", round, i, err)
			}
			if _, _, err := check(e); err != nil {
				t.Fatal(err)
			}
			if i > 0 && e.ID != last+1 {
				t.Fatalf("round %d: ID %d after %d", round, e.ID, last)
			}
			last = e.ID
			rd.Release(e.End)
		}
		rd.Close()
	}
	once.Do(func() { close(stop) })
	wg.Wait()
}
