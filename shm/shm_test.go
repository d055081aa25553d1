package shm

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestCreateOpenCloseSharesBytesAndMode0600(t *testing.T) {
	dir := t.TempDir()
	m, err := Create(dir, "a", 3*4096+5, 0600, -1)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0600 {
		t.Fatalf("mode: want 0600, got %v", st.Mode().Perm())
	}
	if len(m.Bytes()) != 3*4096+5 {
		t.Fatalf("size: want %d, got %d", 3*4096+5, len(m.Bytes()))
	}
	m.Bytes()[100] = 42
	o, err := Open(dir, "a", Trust{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Bytes()[100] != 42 {
		t.Fatalf("second mapping does not see the first one's write")
	}
	if _, err := Create(dir, "a", 4096, 0600, -1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("create of existing file: want ErrExist, got %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := m.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	if m.Bytes() != nil {
		t.Fatal("Bytes after Close should be nil")
	}
	o.Close()
	if _, err := Open(dir, "missing", Trust{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open of missing file: want ErrNotExist, got %v", err)
	}
}

func TestValidNameRefusesEscapes(t *testing.T) {
	bad := []string{"", ".", "..", "a/b", "/x", "a\x00b", strings.Repeat("x", 201)}
	for _, n := range bad {
		if ValidName(n) == nil {
			t.Errorf("ValidName(%q) accepted", n)
		}
		if _, err := Create(t.TempDir(), n, 4096, 0600, -1); err == nil {
			t.Errorf("Create(%q) accepted", n)
		}
	}
	for _, n := range []string{"a", "..a", "topic.p0.ring", strings.Repeat("x", 200)} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q): %v", n, err)
		}
	}
}

func TestFutexWaitTimesOutAndIsWokenAcrossGoroutines(t *testing.T) {
	m, err := Create(t.TempDir(), "f", 4096, 0600, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w := (*uint32)(unsafe.Pointer(&m.Bytes()[64]))
	if err := FutexWait(w, 0, time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("wait with nobody waking: want ErrTimeout, got %v", err)
	}
	if err := FutexWait(w, 7, time.Second); err != nil {
		t.Fatalf("wait on a changed value: want nil, got %v", err)
	}
	done := make(chan error)
	go func() { done <- FutexWait(w, 0, -1) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("woken wait: %v", err)
			}
			if atomic.LoadUint32(w) != 1 {
				t.Fatal("returned before the value changed")
			}
			return
		case <-time.After(time.Millisecond):
			atomic.StoreUint32(w, 1)
			if _, err := FutexWake(w, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestProcessAliveSelfDeadChildAndWrongStart(t *testing.T) {
	s := Self()
	if s.PID != uint32(os.Getpid()) || s.Start == 0 {
		t.Fatalf("Self: got %+v", s)
	}
	if !s.Alive() {
		t.Fatal("self not alive")
	}
	if (Process{PID: s.PID, Start: s.Start + 1}).Alive() {
		t.Fatal("self with a wrong start time reported alive")
	}
	if (Process{}).Alive() {
		t.Fatal("pid 0 reported alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child, ok := Lookup(uint32(cmd.Process.Pid))
	cmd.Wait()
	if !ok {
		// the child may already be reaped-ready; it must at least be dead now
		child = Process{PID: uint32(cmd.Process.Pid), Start: 1}
	}
	if child.Alive() {
		t.Fatalf("dead child %+v reported alive", child)
	}
}

func TestFutexWaitvWakesOnAnyWord(t *testing.T) {
	words := make([]uint32, 3)
	ws := []FutexWord{{&words[0], 0}, {&words[1], 0}, {&words[2], 0}}
	if err := FutexWaitv(ws, 20*time.Millisecond); err != ErrTimeout {
		if err == ErrNoWaitv {
			t.Skip("kernel without futex_waitv")
		}
		t.Fatalf("FutexWaitv with nobody waking: got %v, want ErrTimeout", err)
	}
	done := make(chan error, 1)
	go func() { done <- FutexWaitv(ws, 10*time.Second) }()
	time.Sleep(20 * time.Millisecond)
	atomic.AddUint32(&words[2], 1)
	FutexWake(&words[2], 1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("FutexWaitv woken on its third word: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FutexWaitv not woken by a wake on its third word")
	}
	// A word that already differs returns at once.
	if err := FutexWaitv([]FutexWord{{&words[2], 0}}, 10*time.Second); err != nil {
		t.Fatalf("FutexWaitv on a changed word: %v", err)
	}
}
