package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

// The C tests build libdiaspora_shm.so as a user would, compile C programs
// against diaspora_shm.h with gcc, and run them as processes.

var (
	libOnce sync.Once
	libDir  string
	libErr  error
)

// buildLib builds the library once per test binary.
func buildLib(t testing.TB) string {
	t.Helper()
	libOnce.Do(func() {
		libDir, libErr = os.MkdirTemp("", "dshm-capi")
		if libErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(libDir, "libdiaspora_shm.so"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			libErr = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
		}
	})
	if libErr != nil {
		t.Fatal(libErr)
	}
	return libDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if libDir != "" {
		os.RemoveAll(libDir)
	}
	os.Exit(code)
}

// compileC compiles C sources against the library into dir/name.
func compileC(t *testing.T, dir, name string, srcs ...string) string {
	t.Helper()
	lib := buildLib(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is needed for the C tests: ", err)
	}
	exe := filepath.Join(dir, name)
	args := []string{"-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-I.", "-o", exe}
	args = append(args, srcs...)
	args = append(args, "-L"+lib, "-ldiaspora_shm", "-Wl,-rpath,"+lib, "-lpthread")
	cmd := exec.Command("gcc", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return exe
}

// dirs makes a root and a shm directory for one test's topics.
func dirs(t *testing.T) (root, shmDir string) {
	t.Helper()
	root = t.TempDir()
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = ""
	}
	shmDir, err := os.MkdirTemp(base, "dshm-capi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	return root, shmDir
}

// run runs a program to completion and returns its output.
func run(t *testing.T, timeout time.Duration, exe string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(exe), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestCInterfaceEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shm driver is Linux-only")
	}
	exe := compileC(t, t.TempDir(), "api_test", "testdata/api_test.c")
	root, shmDir := dirs(t)
	out := run(t, 2*time.Minute, exe, root, shmDir)
	if !strings.Contains(out, "ok") {
		t.Fatalf("api_test said:\n%s", out)
	}
}

// python is the interpreter of the Python tests: Debian's, which has
// numpy, pytest and pip from apt, when it is there.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("python3 is needed for the Python tests")
	return ""
}

// pythonCmd runs the interpreter with the package of this checkout and the
// library built for the test.
func pythonCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	lib := buildLib(t)
	cmd := exec.Command(python(t), args...)
	pkg, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg, "DIASPORA_SHM_LIB="+filepath.Join(lib, "libdiaspora_shm.so"),
		"PYTHONDONTWRITEBYTECODE=1")
	return cmd
}

func runCmd(t *testing.T, cmd *exec.Cmd, timeout time.Duration) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %v\n%s", strings.Join(cmd.Args, " "), timeout, out.String())
	}
	return out.String()
}

func TestPythonPackage(t *testing.T) {
	args := []string{"-m", "unittest", "discover", "-v", "-s", "../python/tests"}
	if exec.Command(python(t), "-c", "import pytest").Run() == nil {
		args = []string{"-m", "pytest", "-q", "-p", "no:cacheprovider", "../python/tests"}
	}
	out := runCmd(t, pythonCmd(t, args...), 5*time.Minute)
	t.Logf("%s", out)
}

// openGo opens the driver of a test's directories through the Go API.
func openGo(t *testing.T, root, shmDir string) diaspora.Driver {
	t.Helper()
	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(fmt.Sprintf(`{"root_path": %q, "shm_path": %q}`, root, shmDir)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// pattern is the data of event i in the cross-language tests (xlang.py,
// consume.c): (i%5)*1000+3 bytes, byte k = (i*31 + k*7) & 0xff.
func pattern(i int) []byte {
	b := make([]byte, (i%5)*1000+3)
	for k := range b {
		b[k] = byte((i*31 + k*7) & 0xff)
	}
	return b
}

func TestCProducerToGoConsumer(t *testing.T) {
	exe := compileC(t, t.TempDir(), "simulation", "../examples/c/simulation.c")
	root, shmDir := dirs(t)
	const frames, w, h = 30, 64, 48
	out := run(t, 2*time.Minute, exe, root, shmDir, "frames", fmt.Sprint(frames), fmt.Sprint(w), fmt.Sprint(h))
	if !strings.Contains(out, fmt.Sprintf("frame %d id %d", frames-1, frames-1)) {
		t.Fatalf("simulation said:\n%s", out)
	}
	d := openGo(t, root, shmDir)
	topic, err := d.OpenTopic("frames")
	if err != nil {
		t.Fatal(err)
	}
	c, err := topic.Consumer("go", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	i := 0
	for ev, err := range c.Events(30 * time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.ID() != diaspora.EventID(i) {
			t.Fatalf("frame %d has ID %d", i, ev.ID())
		}
		var md struct{ Frame, Width, Height int }
		if err := ev.Metadata().Decode(&md); err != nil || md.Frame != i || md.Width != w || md.Height != h {
			t.Fatalf("frame %d: metadata %s (%v)", i, ev.Metadata(), err)
		}
		b := ev.Data().Bytes()
		if len(b) != w*h*4 {
			t.Fatalf("frame %d: %d bytes", i, len(b))
		}
		for k := 0; k < w*h; k++ {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
			if v != float32((i*131+k)%4093) {
				t.Fatalf("frame %d pixel %d is %v", i, k, v)
			}
		}
		ev.Acknowledge()
		i++
	}
	if i != frames {
		t.Fatalf("got %d frames, want %d (then the end of the stream)", i, frames)
	}
}

func TestGoProducerToPythonConsumer(t *testing.T) {
	root, shmDir := dirs(t)
	d := openGo(t, root, shmDir)
	if err := d.CreateTopic("go2py", diaspora.MustMetadata(`{"ring_size": "1MiB"}`)); err != nil {
		t.Fatal(err)
	}
	topic, err := d.OpenTopic("go2py")
	if err != nil {
		t.Fatal(err)
	}
	p, err := topic.Producer("go")
	if err != nil {
		t.Fatal(err)
	}
	const n = 500 // more than the ring holds at once: the consumer must acknowledge
	consumer := pythonCmd(t, "../python/tests/xlang.py", "consume", root, shmDir, "go2py", fmt.Sprint(n))
	outc := make(chan string, 1)
	go func() { outc <- runCmdNoFatal(consumer, 2*time.Minute) }()
	for i := range n {
		md := diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i))
		if _, err := p.Push(md, diaspora.DataView{pattern(i)}).Wait(time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if out := <-outc; !strings.Contains(out, fmt.Sprintf("ok %d", n)) {
		t.Fatalf("python consumer said:\n%s", out)
	}
}

// A record damaged in the ring (metadata no serializer wrote) under a
// Python consumer of batches: the batch before it arrives whole, and every
// pull of it then fails naming it (the library reads the batch's records
// in place and leaves the damaged one to be built, and refused, as an event).
func TestBatchPullMeetsADamagedRecord(t *testing.T) {
	root, shmDir := dirs(t)
	d := openGo(t, root, shmDir)
	if err := d.CreateTopic("dmg", diaspora.MustMetadata(`{"ring_size": "1MiB", "durability": "none"}`)); err != nil {
		t.Fatal(err)
	}
	topic, err := d.OpenTopic("dmg")
	if err != nil {
		t.Fatal(err)
	}
	p, err := topic.Producer("go")
	if err != nil {
		t.Fatal(err)
	}
	push := func(md string) {
		if _, err := p.Push(diaspora.MustMetadata(md), diaspora.DataView{[]byte("ok")}).Wait(time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	push(`{"i":0}`)
	push(`{"i":1}`)
	rings, _ := filepath.Glob(filepath.Join(shmDir, "dshm.*"))
	var path string
	for _, r := range rings {
		if !strings.HasSuffix(r, ".json") && !strings.Contains(r, ".tmp-") {
			path = r
		}
	}
	r, err := ring.Open(filepath.Dir(path), filepath.Base(path), shm.Trust{})
	if err != nil {
		t.Fatalf("open the ring among %v: %v", rings, err)
	}
	defer r.Close()
	var cl ring.Claim
	bad := []byte(`{"i":`)
	if err := r.Claim(&cl, []ring.RecordSize{{Meta: len(bad), Data: 2}}, time.Second); err != nil {
		t.Fatal(err)
	}
	copy(cl.Meta(0), bad)
	copy(cl.Data(0), "no")
	if err := cl.Commit(); err != nil {
		t.Fatal(err)
	}
	push(`{"i":3}`)
	script := `
import sys, diaspora_shm.api as api
d = api.Driver(backend="shm", options={"root_path": sys.argv[1], "shm_path": sys.argv[2]})
c = d.open_topic("dmg").consumer("py", data_selector=api.FullDataSelector)
b = next(c.batches(timeout_ms=5000))
assert b.event_ids == [0, 1], b.event_ids
assert [bytes(x) for x in b.buffers] == [b"ok", b"ok"], b.buffers
assert b.metadata(1) == {"i": 1}, b.metadata(1)
for _ in range(2):
    try:
        next(c.batches(timeout_ms=5000))
        sys.exit("a batch past the damaged record")
    except api.Exception as e:
        assert "event 2" in str(e) and "not skipped" in str(e), str(e)
print("ok")
`
	if out := runCmd(t, pythonCmd(t, "-c", script, root, shmDir), time.Minute); !strings.Contains(out, "ok") {
		t.Fatalf("python said:\n%s", out)
	}
}

// Untracked one-push calls wait in the library's push queue and cross
// into Go many at a time (pushqueue.c). From two C threads, between
// tracked pushes, push_many calls and claims: every event arrives once, in
// order per thread and partition, with the data it had when pushed (the
// caller overwrites its buffer at once); the tail of a burst arrives
// without a flush, and a close writes what is queued.
func TestUntrackedPushesThroughTheQueue(t *testing.T) {
	exe := compileC(t, t.TempDir(), "queue", "testdata/queue.c")
	for _, mode := range []string{"inline", "pool"} {
		t.Run(mode, func(t *testing.T) { testQueue(t, exe, mode) })
	}
}

func testQueue(t *testing.T, exe, mode string) {
	root, shmDir := dirs(t)
	d := openGo(t, root, shmDir)
	v, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(`{"type": "schema", "schema": {"type": "object",
		"anyOf": [{"required": ["t"]}, {"required": ["tail"]}, {"required": ["last"]}, {"required": ["drv"]}, {"maxProperties": 0}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CreateTopic("queue", v, diaspora.MustMetadata(`{"ring_size": "4MiB", "durability": "none", "num_partitions": 2}`)); err != nil {
		t.Fatal(err)
	}
	topic, err := d.OpenTopic("queue")
	if err != nil {
		t.Fatal(err)
	}
	c, err := topic.Consumer("check", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const perThread = 3000
	type ev struct {
		T, I, Tail, Last, Drv *int
		part                  int
		data                  string
	}
	evc := make(chan ev, 1024)
	stop := make(chan struct{})
	go func() {
		defer close(evc)
		for {
			select {
			case <-stop:
				return
			default:
			}
			e, err := c.Pull().Wait(100 * time.Millisecond)
			if err != nil {
				continue
			}
			var v ev
			if err := e.Metadata().Decode(&v); err != nil {
				t.Errorf("event %d: metadata %s: %v", e.ID(), e.Metadata(), err)
			}
			var part struct{ ID int }
			e.Partition().Decode(&part)
			v.part = part.ID
			if d := e.Data(); len(d) > 0 {
				v.data = string(d[0])
			}
			e.Acknowledge()
			evc <- v
		}
	}()
	defer close(stop)

	args := []string{root, shmDir, "queue"}
	if mode == "pool" {
		args = append(args, "pool")
	}
	cmd := exec.Command(exe, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	next := map[[2]int]int{} // (thread, partition) → the last i seen
	count := [3]int{}
	tails, lasts, drvs, empties := 0, 0, 0, 0
	take := func(v ev) {
		switch {
		case v.Tail != nil:
			tails++
		case v.Last != nil:
			lasts++
		case v.Drv != nil:
			drvs++
		case v.T != nil && *v.T < 2:
			th, i := *v.T, *v.I
			key := [2]int{th, v.part}
			if prev, ok := next[key]; ok && i <= prev {
				t.Errorf("thread %d, partition %d: event %d after %d", th, v.part, i, prev)
			}
			next[key] = i
			want := make([]byte, 16)
			for k := range want {
				want[k] = byte(th*101 + i*7 + k)
			}
			if v.data != string(want) {
				t.Errorf("thread %d event %d: data %x, want %x", th, i, v.data, want)
			}
			count[th]++
		case v.T != nil:
			count[2]++
		default: // no metadata
			if v.data != strings.Repeat(string(rune('a'+empties)), 8) {
				t.Errorf("event %d without metadata: data %q", empties, v.data)
			}
			empties++
		}
	}
	deadline := time.After(2 * time.Minute)
	wait := func(what string, done func() bool) {
		for !done() {
			select {
			case v, ok := <-evc:
				if !ok {
					t.Fatalf("the consumer stopped waiting for %s", what)
				}
				take(v)
			case <-deadline:
				t.Fatalf("waiting for %s: threads %v, tails %d, lasts %d\n%s", what, count, tails, lasts, stderr.String())
			}
		}
	}
	select {
	case l := <-lines:
		if l != "TAIL" {
			t.Fatalf("queue said %q\n%s", l, stderr.String())
		}
	case <-deadline:
		t.Fatalf("no TAIL from the C program\n%s", stderr.String())
	}
	// The 5 tail events were pushed and not flushed: the queue's drain
	// writes them.
	wait("the tail of the burst, unflushed", func() bool { return tails == 5 })
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	wait("the events of a close", func() bool { return lasts == 3 })
	wait("the events of a driver's close", func() bool { return drvs == 3 })
	if err := cmd.Wait(); err != nil {
		t.Fatalf("queue: %v\n%s", err, stderr.String())
	}
	if l := <-lines; l != "ok" {
		t.Fatalf("queue said %q\n%s", l, stderr.String())
	}
	if empties != 10 {
		t.Errorf("%d events without metadata, want 10", empties)
	}
	if count != [3]int{perThread, perThread, 7} {
		t.Fatalf("events of threads 0, 1 and the others: %v, want %d, %d, 7", count, perThread, perThread)
	}
	for key, last := range next {
		if last < perThread-10 {
			t.Errorf("thread %d, partition %d ends at event %d", key[0], key[1], last)
		}
	}
}

// The push queue checks metadata in C so that what Go would refuse is
// refused at once: what it accepts, Go must accept (what it refuses goes
// to Go, which judges it). The common shapes must be accepted, or every
// push would cross into Go.
func FuzzQueueJSONCheck(f *testing.F) {
	accepted := []string{`{}`, `{"t":0,"i":1}`, `{ "t" : 1 , "i" : [1, -2.5e-3, 0, 1E+9] }`, `[true,false,null,"a\"\\\/\b\f\n\r\t\u00e9"]`,
		`"x"`, `-0`, `12.5`, `{"a":{"b":{"c":[]}}}`, " {\"a\":1}\n"}
	for _, s := range accepted {
		if !queueAcceptsJSON([]byte(s)) {
			f.Errorf("the queue refuses %q", s)
		}
		f.Add([]byte(s))
	}
	for _, s := range []string{``, `{`, `{"a"}`, `{"a":}`, `[1,]`, `01`, `1.`, `.5`, `1e`, `-`, `"\x"`, `"\u12g4"`,
		`{"a":1}x`, `tru`, "\"a\x01\"", `{"é":1}`, strings.Repeat("[", 65) + strings.Repeat("]", 65), `{"a":1,}`, `{1:2}`} {
		if queueAcceptsJSON([]byte(s)) {
			if _, err := diaspora.MetadataFromBytes([]byte(s)); err != nil {
				f.Errorf("the queue accepts %q, which Go refuses: %v", s, err)
			}
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !queueAcceptsJSON(b) {
			return
		}
		if _, err := diaspora.MetadataFromBytes(append([]byte(nil), b...)); err != nil {
			t.Fatalf("the queue accepts %q, which Go refuses: %v", b, err)
		}
	})
}

// runCmdNoFatal is runCmd for another goroutine: failures are in its output.
func runCmdNoFatal(cmd *exec.Cmd, timeout time.Duration) string {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Sprintf("%v\n%s", err, out.String())
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return fmt.Sprintf("still running after %v\n%s", timeout, out.String())
	}
	return out.String()
}

func TestPythonProducerToCConsumer(t *testing.T) {
	exe := compileC(t, t.TempDir(), "consume", "testdata/consume.c")
	root, shmDir := dirs(t)
	d := openGo(t, root, shmDir)
	if err := d.CreateTopic("py2c", diaspora.MustMetadata(`{"ring_size": "1MiB"}`)); err != nil {
		t.Fatal(err)
	}
	const n = 500
	outc := make(chan string, 1)
	consumer := exec.Command(exe, root, shmDir, "py2c", fmt.Sprint(n))
	go func() { outc <- runCmdNoFatal(consumer, 2*time.Minute) }()
	out := runCmd(t, pythonCmd(t, "../python/tests/xlang.py", "produce", root, shmDir, "py2c", fmt.Sprint(n)), 2*time.Minute)
	if !strings.Contains(out, fmt.Sprintf("ok %d", n)) {
		t.Fatalf("python producer said:\n%s", out)
	}
	if out := <-outc; !strings.Contains(out, fmt.Sprintf("ok %d", n)) {
		t.Fatalf("C consumer said:\n%s", out)
	}
}

func TestPythonReads16MiBFramesZeroCopy(t *testing.T) {
	for _, numpy := range []bool{true, false} {
		t.Run(map[bool]string{true: "numpy", false: "memoryview"}[numpy], func(t *testing.T) { testFrames(t, numpy) })
	}
}

func testFrames(t *testing.T, numpy bool) {
	sim := compileC(t, t.TempDir(), "simulation", "../examples/c/simulation.c")
	root, shmDir := dirs(t)
	const frames, w, h = 6, 2048, 2048 // 16 MiB each; the ring holds 2 at a time
	d := openGo(t, root, shmDir)
	if err := d.CreateTopic("frames", diaspora.MustMetadata(`{"ring_size": "64MiB"}`)); err != nil {
		t.Fatal(err)
	}
	// The consumer attaches first, so that every frame is read from the
	// ring (a frame overwritten before it attached would come from the log).
	consumer := pythonCmd(t, "../python/tests/xlang.py", "frames", root, shmDir, "frames",
		fmt.Sprint(frames), fmt.Sprint(w), fmt.Sprint(h))
	consumer.Stderr = os.Stderr
	if !numpy {
		consumer.Env = append(consumer.Env, "XLANG_NO_NUMPY=1")
	}
	stdout, err := consumer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	defer consumer.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("python consumer said %q (%v)", lines.Text(), lines.Err())
	}
	simOut := run(t, 3*time.Minute, sim, root, shmDir, "frames", fmt.Sprint(frames), fmt.Sprint(w), fmt.Sprint(h))
	if !strings.Contains(simOut, fmt.Sprintf("frame %d", frames-1)) {
		t.Fatalf("simulation said:\n%s", simOut)
	}
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	if err := consumer.Wait(); err != nil {
		t.Fatalf("python consumer: %v\n%s", err, rest.String())
	}
	out := rest.String()
	if !strings.Contains(out, fmt.Sprintf("ok %d", frames)) {
		t.Fatalf("python consumer said:\n%s", out)
	}
	t.Logf("python: %s", strings.TrimSpace(out))
}

func TestFortranThroughTheModule(t *testing.T) {
	lib := buildLib(t)
	if _, err := exec.LookPath("gfortran"); err != nil {
		t.Fatal("gfortran is needed for the Fortran test (Debian: apt-get install gfortran): ", err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "fortran_test")
	for _, args := range [][]string{
		{"-c", "-J", dir, "-o", filepath.Join(dir, "diaspora_shm.o"), "diaspora_shm.f90"},
		{"-J", dir, "-o", exe, "testdata/fortran_test.f90", filepath.Join(dir, "diaspora_shm.o"),
			"-L" + lib, "-ldiaspora_shm", "-Wl,-rpath," + lib},
	} {
		if out, err := exec.Command("gfortran", args...).CombinedOutput(); err != nil {
			t.Fatalf("gfortran %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	root, shmDir := dirs(t)
	if out := run(t, time.Minute, exe, root, shmDir); !strings.Contains(out, "ok") {
		t.Fatalf("fortran_test said:\n%s", out)
	}
}

// TestPipInstallOffline installs the package with Debian's pip and no
// index, as the README says, and streams through the installed copy.
func TestPipInstallOffline(t *testing.T) {
	lib := buildLib(t)
	py := python(t)
	if err := exec.Command(py, "-c", "import setuptools, wheel, pip").Run(); err != nil {
		t.Fatalf("%s lacks pip, setuptools or wheel (Debian: apt-get install python3-pip python3-setuptools python3-wheel): %v", py, err)
	}
	src := filepath.Join(t.TempDir(), "python")
	for _, f := range []string{"setup.py", "diaspora_shm/__init__.py", "diaspora_shm/_lib.py", "diaspora_shm/api.py"} {
		copyFile(t, filepath.Join("../python", f), filepath.Join(src, f))
	}
	copyFile(t, filepath.Join(lib, "libdiaspora_shm.so"), filepath.Join(src, "diaspora_shm", "libdiaspora_shm.so"))
	target := filepath.Join(t.TempDir(), "site")
	cmd := exec.Command(py, "-m", "pip", "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
		"--target", target, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pip install: %v\n%s", err, out)
	}
	root, shmDir := dirs(t)
	script := fmt.Sprintf(`
import diaspora_shm, diaspora_shm.api as api
assert diaspora_shm.__file__.startswith(%q), diaspora_shm.__file__
d = api.Driver(backend="shm", options={"root_path": %q, "shm_path": %q})
d.create_topic("t")
t = d.open_topic("t")
assert t.producer("p").push({"x": 1}, b"abc").wait() == 0
e = t.consumer("c").pull().wait()
assert (e.event_id, e.metadata, bytes(e.data[0])) == (0, {"x": 1}, b"abc")
print("ok")
`, target, root, shmDir)
	run := exec.Command(py, "-c", script)
	run.Dir = t.TempDir() // not the checkout: only the installed copy is importable
	run.Env = append(os.Environ(), "PYTHONPATH="+target)
	if out, err := run.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("the installed package: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSimulationToPythonAnalysis runs the two examples of the README as a
// pipeline: the C simulation's frames, analysed in Python.
func TestSimulationToPythonAnalysis(t *testing.T) {
	sim := compileC(t, t.TempDir(), "simulation", "../examples/c/simulation.c")
	root, shmDir := dirs(t)
	const frames, w, h = 12, 256, 128
	d := openGo(t, root, shmDir)
	if err := d.CreateTopic("frames", diaspora.MustMetadata(`{"ring_size": "1MiB"}`)); err != nil {
		t.Fatal(err)
	}
	outc := make(chan string, 1)
	analysis := pythonCmd(t, "../examples/python/analysis.py", root, shmDir, "frames")
	go func() { outc <- runCmdNoFatal(analysis, 2*time.Minute) }()
	run(t, 2*time.Minute, sim, root, shmDir, "frames", fmt.Sprint(frames), fmt.Sprint(w), fmt.Sprint(h))
	out := <-outc
	if !strings.Contains(out, fmt.Sprintf("analysed %d frames", frames)) {
		t.Fatalf("analysis said:\n%s", out)
	}
	// Frame 0 holds k % 4093 for k < 32768: its mean is known.
	want := 0.0
	for k := 0; k < w*h; k++ {
		want += float64(k % 4093)
	}
	if line := fmt.Sprintf("frame 0: mean %.3f", want/float64(w*h)); !strings.Contains(out, line) {
		t.Fatalf("analysis said:\n%s\nwant the line %q", out, line)
	}
}
