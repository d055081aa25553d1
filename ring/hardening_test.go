package ring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/internal/testutil"
	"github.com/diaspora-shm/diaspora/shm"
)

// A claim held past the abandon timeout is turned into padding by readers
// and its space reused; its late Commit must fail without writing a byte of
// the record that now lives there.
func TestLateCommitOfAbandonedClaimWritesNothing(t *testing.T) {
	r := newTestRing(t, Options{})
	r.SetAbandonTimeout(20 * time.Millisecond)
	rd, err := r.Attach("r")
	if err != nil {
		t.Fatal(err)
	}
	var stuck, c Claim
	if err := r.Claim(&stuck, []RecordSize{{Data: 8000}}, 0); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	// Push and read records up to the end of the first lap: the next one
	// goes over the stuck claim's bytes.
	for r.Stats().TailPos+1056 <= uint64(r.Capacity()) {
		if err := push(r, &c, []RecordSize{{Data: 1000}}, 1, seq, time.Second); err != nil {
			t.Fatalf("push %d: %v", seq, err)
		}
		seq++
		e, err := rd.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := check(e); err != nil {
			t.Fatal(err)
		}
		rd.Release(e.End)
	}
	// These are written over the stuck claim's old space, and not read yet.
	first := seq
	for i := 0; i < 9; i++ {
		if err := push(r, &c, []RecordSize{{Data: 1000}}, 1, seq, time.Second); err != nil {
			t.Fatalf("push %d: %v", seq, err)
		}
		seq++
	}
	if err := stuck.Commit(); !errors.Is(err, ErrAbandoned) {
		t.Fatalf("late commit: want ErrAbandoned, got %v", err)
	}
	for want := first; want < seq; want++ {
		e, err := rd.Next(time.Second)
		if err != nil {
			t.Fatalf("record of seq %d after the late commit: %v", want, err)
		}
		if _, got, err := check(e); err != nil || got != want {
			t.Fatalf("record after the late commit: want seq %d intact, got seq %d, %v", want, got, err)
		}
	}
}

// Open validates the header of a ring that producers and readers are
// using flat out; a state the protocol reaches must never be called corrupt.
func TestOpenOfABusyRingNeverCallsItCorrupt(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, "busy", Options{Capacity: MinCapacity})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c Claim
			for seq := uint64(0); !stop.Load(); seq++ {
				push(r, &c, []RecordSize{{Data: 16}, {Meta: 8, Data: 100}}, uint32(p), seq, 50*time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rd, err := r.Attach("reader")
		if err != nil {
			t.Error(err)
			return
		}
		defer rd.Close()
		for !stop.Load() {
			if e, err := rd.Next(10 * time.Millisecond); err == nil {
				rd.Release(e.End)
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	opens := 0
	for time.Now().Before(deadline) {
		o, err := Open(dir, "busy", shm.Trust{})
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("open %d of a live ring: %v", opens, err)
		}
		o.Close()
		opens++
	}
	stop.Store(true)
	wg.Wait()
	if st := r.Stats(); st.TailPos < 4*uint64(r.Capacity()) {
		t.Fatalf("the producers wrote only %d bytes: the test did not exercise a busy ring", st.TailPos)
	}
	t.Logf("%d opens of a busy ring", opens)
}

func TestProducerSlotIsVisibleAndPinsNoSpace(t *testing.T) {
	r := newTestRing(t, Options{})
	ps, err := r.AttachProducer("sim")
	if err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if len(st.Slots) != 1 || !st.Slots[0].Producer || st.Slots[0].Name != "sim" || !st.Slots[0].Alive {
		t.Fatalf("want one live producer slot \"sim\", got %+v", st.Slots)
	}
	var c Claim
	for i := 0; i < 3*r.Capacity()/1056; i++ {
		if err := push(r, &c, []RecordSize{{Data: 1000}}, 0, uint64(i), 0); err != nil {
			t.Fatalf("push %d with only a producer slot: %v", i, err)
		}
	}
	ps.Close()
	ps.Close()
	if st := r.Stats(); len(st.Slots) != 0 {
		t.Fatalf("after Close: want no slots, got %+v", st.Slots)
	}
}

func TestDeletedRingRefusesClaimsAndEndsReadsAndWaits(t *testing.T) {
	r := newTestRing(t, Options{Durable: true})
	rd, _ := r.Attach("r")
	var c Claim
	if err := push(r, &c, []RecordSize{{Data: 16}}, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.WaitArchived(c.End(), -1) }()
	r.MarkDeleted()
	if err := r.Claim(&c, []RecordSize{{Data: 16}}, 0); !errors.Is(err, ErrDeleted) {
		t.Fatalf("claim after delete: want ErrDeleted, got %v", err)
	}
	if _, err := rd.Next(time.Second); err != nil {
		t.Fatalf("the record committed before the delete: %v", err)
	}
	if _, err := rd.Next(-1); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read past the end of a deleted ring: want ErrDeleted, got %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeleted) {
			t.Fatalf("WaitArchived on a deleted ring: want ErrDeleted, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitArchived(-1) did not return after the delete")
	}
}

func TestCompleteRingRefusesClaims(t *testing.T) {
	r := newTestRing(t, Options{})
	r.MarkComplete()
	var c Claim
	if err := r.Claim(&c, []RecordSize{{Data: 16}}, 0); !errors.Is(err, ErrComplete) {
		t.Fatalf("claim after MarkComplete: want ErrComplete, got %v", err)
	}
}

// The shm directory is shared with every user: a ring that is a link, is
// wider than allowed, or belongs to someone else is refused.
func TestOpenRefusesFilesAnotherUserMayHavePut(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, "mine", Options{Capacity: MinCapacity})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := os.Symlink(filepath.Join(dir, "mine"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, "link", shm.Trust{}); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("open of a symbolic link: want ErrPermission, got %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "mine"))
	if err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(dir, "wide")
	if err := os.WriteFile(wide, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(wide, 0o666)
	if _, err := Open(dir, "wide", shm.Trust{Perm: 0o600}); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("open of a 0666 file for a 0600 topic: want ErrPermission, got %v", err)
	}
	if o, err := Open(dir, "wide", shm.AnyOwner); err != nil {
		t.Fatalf("inspection (AnyOwner) of the same file: %v", err)
	} else {
		o.Close()
	}
	if os.Geteuid() == 0 {
		uid, gid := testutil.UnprivilegedUser(t)
		theirs := filepath.Join(dir, "theirs")
		if err := os.WriteFile(theirs, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, "theirs", shm.Trust{Perm: 0o600}); !errors.Is(err, os.ErrPermission) {
			t.Fatalf("open of another user's file: want ErrPermission, got %v", err)
		}
		if o, err := Open(dir, "theirs", shm.Trust{Perm: 0o600, Owners: []uint32{uid}}); err != nil {
			t.Fatalf("open of a file of the topic's owner: %v", err)
		} else {
			o.Close()
		}
		if o, err := Open(dir, "theirs", shm.Trust{Perm: 0o600, Groups: []uint32{gid}}); err != nil {
			t.Fatalf("open of a file of the topic's group: %v", err)
		} else {
			o.Close()
		}
	}
}

// Slices into a ring closed keeping its views (a zero-copy event kept too
// long) read zeros and take writes without killing the process.
func TestSlicesOutliveCloseWithoutFaulting(t *testing.T) {
	r, err := Create(t.TempDir(), "r", Options{Capacity: MinCapacity})
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := r.Attach("r")
	var c Claim
	if err := push(r, &c, []RecordSize{{Meta: 4, Data: 64}}, 0, 7, 0); err != nil {
		t.Fatal(err)
	}
	e, err := rd.Next(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Claim(&c, []RecordSize{{Data: 64}}, 0); err != nil {
		t.Fatal(err)
	}
	open := c.Data(0)
	r.CloseKeepingViews()
	for i, b := range e.Data {
		if b != 0 {
			t.Fatalf("byte %d of a record read after Close: %d, want 0", i, b)
		}
	}
	open[0] = 1 // a write into a claim after Close lands in private memory
	if open[0] != 1 {
		t.Fatal("write after Close was lost within the process")
	}
}

// Producer slots sit after the reader slots: a producer never takes a
// consumer's place, nor a full set of consumers a producer's.
func TestProducerSlotsDoNotUseReaderSlots(t *testing.T) {
	r := newTestRing(t, Options{ReaderSlots: 1})
	ps, err := r.AttachProducer("p")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	rd, err := r.Attach("only")
	if err != nil {
		t.Fatalf("the one reader slot, with a producer attached: %v", err)
	}
	defer rd.Close()
	ps2, err := r.AttachProducer("p2")
	if err != nil {
		t.Fatalf("a producer with every reader slot taken: %v", err)
	}
	ps2.Close()
}

// Close unmaps: opening and closing rings does not grow the process's
// address space (only CloseKeepingViews keeps the range).
func TestCloseGivesBackTheAddressSpace(t *testing.T) {
	dir := t.TempDir()
	vm := func() int64 {
		b, _ := os.ReadFile("/proc/self/status")
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmSize:") {
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmSize:")), "%d", &kb)
			}
		}
		return kb << 10
	}
	r, err := Create(dir, "big", Options{Capacity: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	before := vm()
	for i := 0; i < 20; i++ {
		o, err := Open(dir, "big", shm.Trust{})
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	if grew := vm() - before; grew > 64<<20 {
		t.Fatalf("20 opens and closes of a 64 MiB ring grew the address space by %d MiB", grew>>20)
	}
}

// A record of half the capacity is placeable wherever the tail is, once
// the ring has drained: the padding before it is smaller than it.
func TestHalfRingRecordIsPlaceableAnywhere(t *testing.T) {
	r := newTestRing(t, Options{})
	rd, _ := r.Attach("r")
	var c Claim
	half := RecordSize{Data: r.MaxRecordSize() - RecHeaderSize}
	if r.MaxRecordSize() != r.Capacity()/2 {
		t.Fatalf("MaxRecordSize %d, want capacity/2 = %d", r.MaxRecordSize(), r.Capacity()/2)
	}
	for i := 0; i < 5; i++ {
		// A small record moves the tail off any boundary.
		if err := push(r, &c, []RecordSize{{Data: 16 + 48*i}}, 0, uint64(2*i), time.Second); err != nil {
			t.Fatal(err)
		}
		if err := push(r, &c, []RecordSize{half}, 0, uint64(2*i+1), time.Second); err != nil {
			t.Fatalf("half-ring record %d: %v", i, err)
		}
		for k := 0; k < 2; k++ {
			e, err := rd.Next(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := check(e); err != nil {
				t.Fatal(err)
			}
			rd.Release(e.End)
		}
	}
	if err := r.Claim(&c, []RecordSize{{Data: half.Data + 16}}, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a record over half the ring: want ErrTooLarge, got %v", err)
	}
}

// A party that decided to free a slot (its process looked dead) and is
// overtaken, the slot freed and taken by a new reader meanwhile, must not
// free the new reader's slot: the state word's generation tells them apart.
func TestFreeingAStaleSlotSparesItsNewOwner(t *testing.T) {
	r := newTestRing(t, Options{ReaderSlots: 1})
	a, err := r.Attach("a")
	if err != nil {
		t.Fatal(err)
	}
	so := r.slotOff(0)
	seen := load32(r.hdr, so+SlotOffState) // what a reclaimer loaded before its liveness check
	a.Close()
	b, err := r.Attach("b")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if r.freeSlot(so, seen) {
		t.Fatal("a reclaimer freed the slot of the reader that took it after it looked")
	}
	if st := r.Stats(); len(st.Slots) != 1 || st.Slots[0].Name != "b" {
		t.Fatalf("the new reader's slot: %+v", st.Slots)
	}
}
