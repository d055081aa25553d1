package examples_test

// The examples are built and run as real processes, as a user runs them,
// and their output is checked.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// bin builds every example once, without the race detector, and returns
// the path of the named one.
func bin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "diaspora-examples-bin-")
		if buildErr != nil {
			return
		}
		var out []byte
		cmd := exec.Command(goTool(), "build", "-o", binDir+string(filepath.Separator), "./producer", "./consumer", "./stream", "./zerocopy")
		out, buildErr = cmd.CombinedOutput()
		if buildErr != nil {
			buildErr = &buildError{buildErr, out}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// dirs returns a root path and an shm path private to the test.
func dirs(t *testing.T) (root, shm string) {
	t.Helper()
	shm, err := os.MkdirTemp("/dev/shm", "diaspora-examples-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	return t.TempDir(), shm
}

// process is a started example.
type process struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin(t, name), args...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.Env = append(os.Environ(), "DIASPORA_ROOT=") // the flags say where
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// wait waits for the process and returns its output; it fails the test if
// the process fails or takes longer than limit.
func (p *process) wait(t *testing.T, limit time.Duration) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(p.cmd.Args, " "), err, p.out.String())
		}
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %v\n%s", strings.Join(p.cmd.Args, " "), limit, p.out.String())
	}
	return p.out.String()
}

func mustMatch(t *testing.T, what, out, pattern string) []string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s: output does not match %q:\n%s", what, pattern, out)
	}
	return m
}

// The producer and the consumer programs, started at the same time on one
// topic, race to create it; every event arrives in order; a second run of
// the consumer resumes after its acknowledgements and gets nothing.
func TestProducerAndConsumerPrograms(t *testing.T) {
	root, shm := dirs(t)
	flags := []string{"-root", root, "-shm", shm, "-topic", "t"}
	cons := start(t, "consumer", append(flags, "-n", "20000", "-idle", "10s")...)
	prod := start(t, "producer", append(flags, "-n", "20000", "-size", "512")...)
	out := prod.wait(t, 30*time.Second)
	mustMatch(t, "producer", out, `producer: pushed 20000 events of 512 bytes to topic "t" in \S+ \(\d+ events/s\)`)
	out = cons.wait(t, 30*time.Second)
	mustMatch(t, "consumer", out, `consumer: received 20000 events from topic "t" in \S+ \(\d+ events/s\), 0 out of order`)

	out = start(t, "consumer", append(flags, "-idle", "200ms")...).wait(t, 30*time.Second)
	mustMatch(t, "consumer, second run", out, `consumer: no new event in topic "t" for 200ms`)

	out = start(t, "producer", append(flags, "-n", "10")...).wait(t, 30*time.Second)
	mustMatch(t, "producer, 10 more", out, `producer: pushed 10 events`)
	out = start(t, "consumer", append(flags, "-idle", "200ms")...).wait(t, 30*time.Second)
	mustMatch(t, "consumer, after 10 more", out, `consumer: received 10 events from topic "t" .*, 0 out of order`)
}

// The one-command stream: two child processes, every event once and in
// order, and its temporary directories removed.
func TestStreamProgram(t *testing.T) {
	out := start(t, "stream", "-n", "20000").wait(t, 60*time.Second)
	m := mustMatch(t, "stream", out, `through (\S+)\n`)
	mustMatch(t, "stream", out, `producer \(pid \d+\): pushed 20000 events`)
	mustMatch(t, "stream", out, `consumer \(pid \d+\): received 20000 events in order, each once`)
	mustMatch(t, "stream", out, `stream: OK: all 20000 events arrived once, in order, intact`)
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("stream left its shm path %s behind (%v)", m[1], err)
	}
}

// Zero-copy frames between two processes: claimed, written in place,
// checked in the ring by the consumer.
func TestZeroCopyProgram(t *testing.T) {
	root, shm := dirs(t)
	flags := []string{"-root", root, "-shm", shm, "-frames", "12", "-size", "1048576"}
	cons := start(t, "zerocopy", append(flags, "-role", "consumer")...)
	prod := start(t, "zerocopy", append(flags, "-role", "producer")...)
	mustMatch(t, "zerocopy producer", prod.wait(t, 30*time.Second), `producer: wrote 12 frames of 1048576 bytes in place`)
	mustMatch(t, "zerocopy consumer", cons.wait(t, 30*time.Second), `consumer: checked 12 frames in the ring, zero-copy`)

	out := start(t, "zerocopy", "-root", root, "-shm", shm, "-frames", "5", "-size", "65536").wait(t, 30*time.Second)
	mustMatch(t, "zerocopy both", out, `checked 5 frames`)
}
