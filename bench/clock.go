package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cross-process timestamps. Go's monotonic readings are relative to the
// process start, so each process measures once the offset between its
// time.Since(monoBase) and CLOCK_MONOTONIC, which every process on the node
// shares. mono() then costs one vDSO clock read (about 20 ns) instead of a
// clock_gettime system call, and two processes' mono() values compare
// directly, within the calibration error (monoErr, typically < 100 ns).
var (
	monoBase   = time.Now()
	monoOffset int64
	monoErr    int64
)

func init() { calibrateMono() }

func calibrateMono() {
	best := int64(1 << 62)
	for i := 0; i < 200; i++ {
		a := int64(time.Since(monoBase))
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			panic(err)
		}
		b := int64(time.Since(monoBase))
		if w := b - a; w < best {
			best = w
			monoOffset = ts.Nano() - (a+b)/2
		}
	}
	monoErr = best / 2
}

// mono returns CLOCK_MONOTONIC in nanoseconds, comparable across processes.
func mono() int64 { return int64(time.Since(monoBase)) + monoOffset }

// vmHWM returns the process's peak resident set size in bytes (VmHWM).
func vmHWM() int64 { return procStatusKB("VmHWM:") * 1024 }

func procStatusKB(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, key) {
			fs := strings.Fields(line[len(key):])
			if len(fs) > 0 {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// Machine describes where the numbers were measured.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	GOMAXPROC int    `json:"gomaxprocs"`
	Date      string `json:"date"`
	LoadAvg   string `json:"loadavg_at_start"`
	MemTotal  string `json:"mem_total"`
	ShmFS     string `json:"shm_path"`
	ClockErr  int64  `json:"clock_calibration_error_ns"`
}

func describeMachine() Machine {
	m := Machine{
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		GOMAXPROC: runtime.GOMAXPROCS(0),
		Date:      time.Now().Format(time.RFC3339),
		ClockErr:  monoErr,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if i := strings.IndexByte(line, ':'); i >= 0 {
					m.CPUModel = strings.TrimSpace(line[i+1:])
					break
				}
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) +
			" " + unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(line)[1:], " ")
	}
	return m
}

// loadAvg1 returns the one-minute load average, -1 if unknown.
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// paceUntil waits for mono() to reach t. It spins, but gives the CPU away
// (sched_yield) while more than 5 µs remain, so that on a small machine the
// spinning consumer and the driver's background goroutines still get to run.
func paceUntil(t int64) {
	for {
		d := t - mono()
		if d <= 0 {
			return
		}
		if d > 5000 {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}
