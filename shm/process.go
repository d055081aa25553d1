package shm

import (
	"bytes"
	"os"
	"strconv"
	"sync"
)

// Process identifies a process across pid reuse: its pid and its start time
// (field 22 of /proc/PID/stat, in clock ticks since boot).
type Process struct {
	PID   uint32
	Start uint64
}

var (
	selfOnce sync.Once
	self     Process
)

// Self returns the calling process; the value is computed once.
func Self() Process {
	selfOnce.Do(func() {
		pid := os.Getpid()
		st, _, _ := procStat(uint32(pid))
		self = Process{PID: uint32(pid), Start: st}
	})
	return self
}

// Alive reports whether p's pid exists, is not a zombie, and started at
// p.Start. A pid of 0 is never alive.
func (p Process) Alive() bool {
	if p.PID == 0 {
		return false
	}
	st, state, ok := procStat(p.PID)
	return ok && st == p.Start && state != 'Z' && state != 'X'
}

// PIDAlive reports whether a process with this pid exists and is not a
// zombie, whatever its start time.
func PIDAlive(pid uint32) bool {
	if pid == 0 {
		return false
	}
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// Lookup returns the Process currently holding pid (ok false if none).
func Lookup(pid uint32) (Process, bool) {
	if pid == 0 {
		return Process{}, false
	}
	st, state, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' {
		return Process{}, false
	}
	return Process{PID: pid, Start: st}, true
}

// procStat reads /proc/pid/stat and returns the start time (field 22) and
// state (field 3). The command name (field 2) may hold spaces and ')', so
// fields are counted after the last ')'.
func procStat(pid uint32) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, f[0][0], true
}
