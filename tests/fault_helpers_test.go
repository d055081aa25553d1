package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// seedFor derives a test's seed from DSHM_SEED and the test's name and logs
// how to replay it.
func seedFor(t testing.TB) int64 {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	s := baseSeed ^ int64(h.Sum64()>>1)
	t.Logf("seed %d (replay: DSHM_SEED=%d go test ./tests -run '^%s$')", s, baseSeed, strings.SplitN(t.Name(), "/", 2)[0])
	return s
}

// faultEnv is a root path and a shm path private to one test.
type faultEnv struct {
	root, shm string
	opts      diaspora.Metadata
}

func newFaultEnv(t testing.TB) *faultEnv {
	t.Helper()
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-fault-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	return envAt(t.TempDir(), shmDir)
}

func envAt(root, shmDir string) *faultEnv {
	return &faultEnv{root: root, shm: shmDir,
		opts: diaspora.MustMetadata(fmt.Sprintf(`{"root_path":%q,"shm_path":%q}`, root, shmDir))}
}

func (e *faultEnv) driver(t testing.TB) diaspora.Driver {
	t.Helper()
	d, err := diaspora.NewDriver("shm", e.opts)
	if err != nil {
		t.Fatalf("NewDriver(%s): %v", e.opts.Dump(), err)
	}
	return d
}

func (e *faultEnv) createTopic(t testing.TB, name, options string) {
	t.Helper()
	d := e.driver(t)
	defer d.Close()
	if err := d.CreateTopic(name, diaspora.MustMetadata(options)); err != nil {
		t.Fatalf("CreateTopic(%q, %s): %v", name, options, err)
	}
}

// rings lists the ring files (and their sidecars) under the shm path.
func (e *faultEnv) rings() []string {
	r, _ := filepath.Glob(filepath.Join(e.shm, "dshm.*"))
	return r
}

// ringFiles lists the ring files only, by partition order of their names.
func (e *faultEnv) ringFiles() []string {
	var out []string
	for _, r := range e.rings() {
		if !strings.HasSuffix(r, ".json") && !strings.Contains(r, ".tmp-") {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// reboot deletes every ring of the shm path, as losing /dev/shm would.
func (e *faultEnv) reboot(t testing.TB) int {
	n := 0
	for _, r := range e.rings() {
		if err := os.Remove(r); err != nil {
			t.Fatalf("reboot: %v", err)
		}
		n++
	}
	return n
}

func (e *faultEnv) partitionDir(topic string, p int) string {
	return filepath.Join(e.root, "topics", topic, "partitions", fmt.Sprint(p))
}

// payload is the data of push seq of incarnation inc of producer name:
// deterministic, so any process can check the bytes it received. Sizes run
// from 0 to 2 KiB.
func payload(name string, inc, seq int) []byte {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", name, inc, seq)
	s := h.Sum64()
	r := rand.New(rand.NewPCG(s, s>>7|1))
	n := int(s % 2049)
	if seq%17 == 0 {
		n = 0
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func payloadMeta(name string, inc, seq int) diaspora.Metadata {
	return diaspora.MustMetadata(fmt.Sprintf(`{"p":%q,"inc":%d,"seq":%d}`, name, inc, seq))
}

type payloadKey struct {
	P   string
	Inc int
	Seq int
}

func (k payloadKey) String() string { return fmt.Sprintf("%s/%d/%d", k.P, k.Inc, k.Seq) }

// checkEvent decodes an event's metadata and compares its bytes with what
// was pushed under that key.
func checkEvent(ev diaspora.Event) (payloadKey, uint32, error) {
	var k payloadKey
	if err := ev.Metadata().Decode(&k); err != nil || k.P == "" {
		return k, 0, fmt.Errorf("event %d: metadata %s is not a pushed one: %v", ev.ID(), ev.Metadata().Dump(), err)
	}
	got := ev.Data().Bytes()
	want := payload(k.P, k.Inc, k.Seq)
	if !bytes.Equal(got, want) {
		return k, crc32.ChecksumIEEE(got), fmt.Errorf("event %d (%s): %d bytes differ from the %d pushed", ev.ID(), k, len(got), len(want))
	}
	return k, crc32.ChecksumIEEE(got), nil
}

func partitionOf(ev diaspora.Event) int {
	var p struct{ ID int }
	ev.Partition().Decode(&p)
	return p.ID
}

// badOutput finds a panic, a fatal error or a data race in a child's
// stderr, and returns the text around its first sign: where the trouble
// began, not where a traceback of it ends.
func badOutput(stderr string) string {
	first := -1
	for _, s := range []string{"panic:", "panic during panic", "goroutine ", "fatal error:", "WARNING: DATA RACE", "unexpected fault address", "SIGSEGV", "SIGBUS", "unexpected return pc"} {
		if i := strings.Index(stderr, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first < 0 {
		return ""
	}
	return stderr[max(0, first-300):min(len(stderr), first+3000)]
}

// lockedBuffer is a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is one incarnation of a child process: the test binary re-executed
// with a role. Each stdout line goes to onLine, in order, from one goroutine.
type proc struct {
	role, name string
	inc        int
	cmd        *exec.Cmd
	stderr     *lockedBuffer
	linesDone  chan struct{}
	exited     chan struct{}
	exitErr    error
}

// spawn starts a child. env adds to the parent's environment.
func spawn(t testing.TB, role, name string, inc int, env []string, cred *syscall.Credential, onLine func(*proc, string)) *proc {
	t.Helper()
	return spawnBin(t, os.Args[0], role, name, inc, env, cred, onLine)
}

// spawnBin is spawn of the test binary at bin (a copy other users reach).
func spawnBin(t testing.TB, bin, role, name string, inc int, env []string, cred *syscall.Credential, onLine func(*proc, string)) *proc {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), faultRoleEnv+"="+role, "DSHM_NAME="+name, fmt.Sprintf("DSHM_INC=%d", inc))
	cmd.Env = append(cmd.Env, env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p := &proc{role: role, name: name, inc: inc, cmd: cmd, stderr: &lockedBuffer{},
		linesDone: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %s: %v", role, name, err)
	}
	go func() {
		defer close(p.linesDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if onLine != nil {
				onLine(p, sc.Text())
			}
		}
	}()
	go func() {
		<-p.linesDone
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) String() string {
	return fmt.Sprintf("%s %s#%d (pid %d)", p.role, p.name, p.inc, p.cmd.Process.Pid)
}

// kill sends SIGKILL and waits until every line it wrote was handled.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop asks the child to finish cleanly (SIGTERM) and waits up to timeout;
// it returns an error if the child hung or failed.
func (p *proc) stop(timeout time.Duration) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	return p.waitExit(timeout)
}

func (p *proc) waitExit(timeout time.Duration) error {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump in stderr says where it hung
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.kill()
		}
		return fmt.Errorf("%v hung: still running %v after it was asked to stop; stderr:\n%s", p, timeout, tail(p.stderr.String(), 4000))
	}
	if ee, ok := p.exitErr.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil // stopped before it set up its handler: it did nothing yet
		}
	}
	if p.exitErr != nil {
		return fmt.Errorf("%v: %v; stderr:\n%s", p, p.exitErr, tail(p.stderr.String(), 4000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// errorsIs is errors.Is, shortened for tables.

func crcOf(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
