package segment

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Child processes: the test binary re-executes itself with SEGMENT_CHILD set.
const childEnv = "SEGMENT_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode, os.Getenv("SEGMENT_DIR")))
	}
	os.Exit(m.Run())
}

func checkNoLeak(t *testing.T) { goleak.VerifyNone(t) }

const (
	followEvents = 20000
	followSize   = 24
)

func runChild(mode, dir string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, mode+": "+format+"\n", a...)
		return 1
	}
	switch mode {
	case "follow-writer":
		w, err := OpenWriter(dir, Options{SegmentSize: 64 << 10})
		if err != nil {
			return fail("%v", err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for i := 0; i < followEvents; {
			n := min(1+rng.IntN(200), followEvents-i)
			evs := make([]Event, n)
			for k := range evs {
				id := uint64(i+k) * 2
				evs[k] = Event{ID: id, Data: payload(id, followSize)}
			}
			if err := w.Append(evs); err != nil {
				return fail("%v", err)
			}
			i += n
			if rng.IntN(5) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if err := w.Close(); err != nil {
			return fail("%v", err)
		}
	case "follow-reader":
		r, err := OpenReader(dir)
		if err != nil {
			return fail("%v", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < followEvents; {
			ev, err := r.Next()
			if err == io.EOF {
				if time.Now().After(deadline) {
					return fail("stuck after %d events", i)
				}
				time.Sleep(200 * time.Microsecond)
				continue
			}
			if err != nil {
				return fail("after %d events: %v", i, err)
			}
			want := uint64(i) * 2
			if ev.ID != want || string(ev.Data) != string(payload(want, followSize)) {
				return fail("event %d: got ID %d (%d bytes), want ID %d", i, ev.ID, len(ev.Data), want)
			}
			i++
		}
		if _, err := r.Next(); err != io.EOF {
			return fail("extra data after the last event: %v", err)
		}
	case "crash-writer":
		l, err := TryLock(dir)
		if err != nil {
			return fail("%v", err)
		}
		defer l.Unlock()
		w, err := OpenWriter(dir, Options{Sync: SyncAlways, SegmentSize: 32 << 10})
		if err != nil {
			return fail("%v", err)
		}
		for {
			next := w.NextID()
			evs := make([]Event, 10)
			for k := range evs {
				id := next + uint64(k)
				evs[k] = Event{ID: id, Data: payload(id, 100)}
			}
			if err := w.Append(evs); err != nil {
				return fail("%v", err)
			}
			fmt.Printf("%d\n", w.NextID())
		}
	case "position-loop", "position-loop-nosync":
		base, _, err := LoadPosition(dir, "c")
		if err != nil {
			return fail("%v", err)
		}
		store := StorePosition
		if mode == "position-loop-nosync" {
			store = WritePosition
		}
		for v := base + 1; ; v++ {
			if err := store(dir, "c", v); err != nil {
				return fail("%v", err)
			}
			if v == base+1 {
				fmt.Println("ready")
			}
		}
	default:
		return fail("unknown mode")
	}
	return 0
}

func child(t *testing.T, mode, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "SEGMENT_DIR="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestReaderProcessFollowsWriterProcess(t *testing.T) {
	dir := t.TempDir()
	reader := child(t, "follow-reader", dir)
	writer := child(t, "follow-writer", dir)
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	if err := writer.Wait(); err != nil {
		t.Fatalf("writer process: %v", err)
	}
	if err := reader.Wait(); err != nil {
		t.Fatalf("reader process: %v", err)
	}
	if segs, _ := listSegments(dir); len(segs) < 3 {
		t.Fatalf("the reader should have crossed segment files; only %d", len(segs))
	}
}

func TestKilledWriterPassesLockAndLeavesLogIntact(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := child(t, "crash-writer", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var acked uint64
		for lines := 0; lines < 40+round*17 && sc.Scan(); lines++ {
			acked, _ = strconv.ParseUint(sc.Text(), 10, 64)
		}
		if acked == 0 {
			t.Fatal("writer process printed nothing")
		}
		if _, err := TryLock(dir); err == nil {
			t.Fatal("TryLock succeeded while the writer process holds the lock")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		go io.Copy(io.Discard, out)
		cmd.Wait()

		l, err := TryLock(dir)
		if err != nil {
			t.Fatalf("round %d: TryLock after SIGKILL: %v", round, err)
		}
		next, ok, err := LastID(dir)
		if err != nil || !ok || next < acked {
			t.Fatalf("round %d: LastID %d %v %v, want >= acknowledged %d", round, next, ok, err, acked)
		}
		w, err := OpenWriter(dir, Options{Sync: SyncAlways, SegmentSize: 32 << 10})
		if err != nil {
			t.Fatalf("round %d: OpenWriter: %v", round, err)
		}
		if w.NextID() < acked || w.NextID()%10 != 0 {
			t.Fatalf("round %d: NextID %d, acknowledged %d", round, w.NextID(), acked)
		}
		got := readAll(t, dir, 0)
		if uint64(len(got)) != w.NextID() {
			t.Fatalf("round %d: read %d events, NextID %d", round, len(got), w.NextID())
		}
		for i, ev := range got {
			checkEvent(t, ev, Event{ID: uint64(i), Data: payload(uint64(i), 100)})
		}
		id := w.NextID()
		if err := w.Append([]Event{{ID: id, Data: payload(id, 100)}}); err != nil {
			t.Fatal(err)
		}
		// Keep IDs in steps of 10 for the next round's check.
		evs := make([]Event, 9)
		for k := range evs {
			evs[k] = Event{ID: id + 1 + uint64(k), Data: payload(id+1+uint64(k), 100)}
		}
		if err := w.Append(evs); err != nil {
			t.Fatal(err)
		}
		w.Close()
		l.Unlock()
	}
}

func TestKilledPositionUpdateLeavesOldOrNewValue(t *testing.T) {
	for _, mode := range []string{"position-loop", "position-loop-nosync"} {
		t.Run(mode, func(t *testing.T) { testKilledPositionUpdate(t, mode) })
	}
}

func testKilledPositionUpdate(t *testing.T, mode string) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	var last uint64
	for i := 0; i < 30; i++ {
		cmd := child(t, mode, dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !bufio.NewScanner(out).Scan() {
			t.Fatal("position child did not start")
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		v, ok, err := LoadPosition(dir, "c")
		if err != nil || !ok {
			t.Fatalf("iteration %d: LoadPosition = %d %v %v", i, v, ok, err)
		}
		if v <= last {
			t.Fatalf("iteration %d: position %d, but the child had already stored %d and only stores larger values", i, v, last)
		}
		last = v
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, positionsDir)); len(ents) != 1 {
		t.Fatalf("positions dir holds %d entries, want 1", len(ents))
	}
}
