package driver_test

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/internal/testutil"
)

// The tests below run producers and consumers in real processes: the test
// binary re-executed with roleEnv naming what the child does.
const roleEnv = "DSHM_TEST_ROLE"

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// payloadFor is the data of event i of a producer: checkable by a consumer
// in another process.
func payloadFor(w, i int) []byte {
	return []byte(fmt.Sprintf("producer %d event %d %s", w, i, strings.Repeat("z", i%50)))
}

// runRole is the child side. It reads its parameters from the environment
// and reports on stdout, one line per fact, so the parent can kill it at a
// known point.
func runRole(role string) int {
	opts := diaspora.MustMetadata(os.Getenv("DSHM_OPTS"))
	topic := os.Getenv("DSHM_TOPIC")
	n, _ := strconv.Atoi(os.Getenv("DSHM_N"))
	w, _ := strconv.Atoi(os.Getenv("DSHM_W"))
	name := os.Getenv("DSHM_NAME")
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer d.Close()
	th, err := d.OpenTopic(topic)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	switch role {
	case "produce":
		// Pushes n events; with DSHM_WAIT each push is waited for and
		// reported as "done <id> <i>" once its future completed.
		p, err := th.Producer(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		wait := os.Getenv("DSHM_WAIT") != ""
		for i := 0; i < n; i++ {
			md := diaspora.MustMetadata(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
			f := p.Push(md, diaspora.DataView{payloadFor(w, i)})
			if wait {
				id, err := f.Wait(30 * time.Second)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 2
				}
				fmt.Fprintf(out, "done %d %d\n", id, i)
				out.Flush()
			}
		}
		if err := p.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Fprintln(out, "closed")
	case "consume":
		// Consumes n events with data, checking each, acknowledging each;
		// reports "got <partition> <id> <w> <i> <crc>" and then "acked <id>".
		c, err := th.Consumer(name, diaspora.FullDataSelector, diaspora.BytesAllocator)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		for k := 0; k < n; k++ {
			ev, err := c.Pull().Wait(30 * time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, "pull:", err)
				return 2
			}
			var m struct{ W, I int }
			if err := ev.Metadata().Decode(&m); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			data := ev.Data().Bytes()
			if string(data) != string(payloadFor(m.W, m.I)) {
				fmt.Fprintf(os.Stderr, "event %d: data %q does not match its metadata %s\n", ev.ID(), data, ev.Metadata().Dump())
				return 2
			}
			var part struct{ ID int }
			ev.Partition().Decode(&part)
			fmt.Fprintf(out, "got %d %d %d %d %08x\n", part.ID, ev.ID(), m.W, m.I, crc32.ChecksumIEEE(data))
			if err := ev.Acknowledge(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Fprintf(out, "acked %d\n", ev.ID())
			out.Flush()
		}
		if os.Getenv("DSHM_HANG") != "" {
			fmt.Fprintln(out, "hanging")
			out.Flush()
			select {}
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 2
	}
	return 0
}

// TestCreateRaceAcrossProcesses: processes creating the same topic at once;
// exactly one succeeds, the others get ErrTopicExists.
func TestCreateRaceAcrossProcesses(t *testing.T) {
	_, opts := newDriver(t)
	const n = 6
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < n; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), createRoleEnv+"=1", "DSHM_OPTS="+opts.Dump())
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	won, exists := 0, 0
	for i, cmd := range cmds {
		cmd.Wait()
		switch strings.TrimSpace(outs[i].String()) {
		case "created":
			won++
		case "exists":
			exists++
		default:
			t.Errorf("creator %d said %q", i, outs[i].String())
		}
	}
	if won != 1 || exists != n-1 {
		t.Fatalf("%d processes created the topic and %d saw ErrTopicExists; want 1 and %d", won, exists, n-1)
	}
}

// createRoleEnv makes the test binary create topic "raced" and say how it went.
const createRoleEnv = "DSHM_TEST_CREATE"

func init() {
	if os.Getenv(createRoleEnv) == "" {
		return
	}
	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(os.Getenv("DSHM_OPTS")))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	err = d.CreateTopic("raced", diaspora.MustMetadata(`{"num_partitions":3}`))
	switch {
	case err == nil:
		fmt.Println("created")
	case errors.Is(err, diaspora.ErrTopicExists):
		fmt.Println("exists")
	default:
		fmt.Println(err)
	}
	os.Exit(0)
}

type child struct {
	cmd   *exec.Cmd
	lines chan string
	errb  *strings.Builder
}

func startChild(t *testing.T, role string, opts diaspora.Metadata, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "DSHM_OPTS="+opts.Dump())
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 1<<16), errb: &strings.Builder{}}
	cmd.Stderr = c.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// line returns the child's next line, failing the test after timeout.
func (c *child) line(t *testing.T, timeout time.Duration) (string, bool) {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		return l, ok
	case <-time.After(timeout):
		t.Fatalf("child %v said nothing for %v; stderr: %s", c.cmd.Args, timeout, c.errb.String())
		return "", false
	}
}

func (c *child) wait(t *testing.T) {
	t.Helper()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child %v: %v; stderr: %s", c.cmd.Args, err, c.errb.String())
	}
}

// TestCrossProcessFourPartitions streams from two producer processes to a
// consumer process through four partitions: every event arrives exactly
// once, intact, in push order per producer and partition.
func TestCrossProcessFourPartitions(t *testing.T) {
	const n = 3000
	d, opts := newDriver(t)
	createTopic(t, d, "xproc", `{"num_partitions":4,"ring_size":"256KiB","durability":"async"}`)
	cons := startChild(t, "consume", opts, "DSHM_TOPIC=xproc", "DSHM_NAME=reader", fmt.Sprintf("DSHM_N=%d", 2*n))
	prods := []*child{
		startChild(t, "produce", opts, "DSHM_TOPIC=xproc", "DSHM_NAME=w0", "DSHM_W=0", fmt.Sprintf("DSHM_N=%d", n)),
		startChild(t, "produce", opts, "DSHM_TOPIC=xproc", "DSHM_NAME=w1", "DSHM_W=1", fmt.Sprintf("DSHM_N=%d", n)),
	}
	seen := map[[2]int]bool{}
	lastID := map[int]int64{0: -1, 1: -1, 2: -1, 3: -1}
	for len(seen) < 2*n {
		l, ok := cons.line(t, 60*time.Second)
		if !ok {
			t.Fatalf("consumer ended after %d events: %s", len(seen), cons.errb.String())
		}
		var part, w, i int
		var id int64
		var crc string
		if _, err := fmt.Sscanf(l, "got %d %d %d %d %s", &part, &id, &w, &i, &crc); err != nil {
			continue
		}
		key := [2]int{w, i}
		if seen[key] {
			t.Fatalf("event %v delivered twice", key)
		}
		seen[key] = true
		if id <= lastID[part] {
			t.Fatalf("partition %d: ID %d after %d", part, id, lastID[part])
		}
		lastID[part] = id
	}
	for _, p := range prods {
		p.wait(t)
	}
	cons.wait(t)
}

// TestKilledConsumerResumesAfterAck: a consumer process acknowledges event
// k and is killed with SIGKILL; the name reopened starts at k+1.
func TestKilledConsumerResumesAfterAck(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "resume", `{"ring_size":"1MiB","durability":"async"}`)
	p, _ := th.Producer("p")
	for i := 0; i < 50; i++ {
		p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"w":0,"i":%d}`, i)), diaspora.DataView{payloadFor(0, i)})
	}
	if _, err := p.Flush().Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	const k = 20
	c := startChild(t, "consume", opts, "DSHM_TOPIC=resume", "DSHM_NAME=analysis", fmt.Sprintf("DSHM_N=%d", k+1), "DSHM_HANG=1")
	for {
		l, ok := c.line(t, 30*time.Second)
		if !ok {
			t.Fatalf("consumer ended early: %s", c.errb.String())
		}
		if l == "hanging" {
			break
		}
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	cons, err := th.Consumer("analysis")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cons.Pull().Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID() != k+1 {
		t.Fatalf("reopened consumer starts at %d, want %d", ev.ID(), k+1)
	}
}

// TestKilledProducerSyncSurvivesLossOfRings: a producer process under sync
// is killed mid-stream; the rings are deleted as a reboot would; every push
// whose future had completed is read back, identical.
func TestKilledProducerSyncSurvivesLossOfRings(t *testing.T) {
	d, opts := newDriver(t)
	createTopic(t, d, "durable", `{"ring_size":"256KiB","durability":"sync","num_partitions":2}`)
	d.Close()
	prod := startChild(t, "produce", opts, "DSHM_TOPIC=durable", "DSHM_NAME=sim", "DSHM_W=3", "DSHM_N=100000", "DSHM_WAIT=1")
	done := map[int]bool{}
	for len(done) < 300 {
		l, ok := prod.line(t, 30*time.Second)
		if !ok {
			t.Fatalf("producer ended early: %s", prod.errb.String())
		}
		var id, i int
		if _, err := fmt.Sscanf(l, "done %d %d", &id, &i); err == nil {
			done[i] = true
		}
	}
	prod.cmd.Process.Signal(syscall.SIGKILL)
	prod.cmd.Wait()
	// Everything the child said before it died counts as completed.
	for l := range prod.lines {
		var id, i int
		if _, err := fmt.Sscanf(l, "done %d %d", &id, &i); err == nil {
			done[i] = true
		}
	}
	var m map[string]string
	opts.Decode(&m)
	rings, _ := filepath.Glob(filepath.Join(m["shm_path"], "dshm.*"))
	if len(rings) == 0 {
		t.Fatal("no ring files to delete")
	}
	for _, r := range rings {
		os.Remove(r)
	}
	d2, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	th, err := d2.OpenTopic("durable")
	if err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("after-reboot", diaspora.FullDataSelector, diaspora.BytesAllocator)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for {
		ev, err := c.Pull().Wait(2 * time.Second)
		if errors.Is(err, diaspora.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var md struct{ W, I int }
		if err := ev.Metadata().Decode(&md); err != nil {
			t.Fatal(err)
		}
		if string(ev.Data().Bytes()) != string(payloadFor(md.W, md.I)) {
			t.Fatalf("event %d: data differs from what was pushed", ev.ID())
		}
		got[md.I] = true
	}
	for i := range done {
		if !got[i] {
			t.Errorf("push %d completed under sync but is gone after the rings were lost", i)
		}
	}
	t.Logf("%d completed pushes, %d events read back", len(done), len(got))
	// A new push continues the IDs rather than reusing one.
	p, err := th.Producer("again")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"w":9,"i":0}`), nil).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOtherUserCannotOpenTopicFiles runs cat as an unprivileged user on the
// rings and the log of a 0600 topic: each read must be refused.
func TestOtherUserCannotOpenTopicFiles(t *testing.T) {
	uid, gid := testutil.UnprivilegedUser(t)
	d, opts := newDriver(t)
	th := createTopic(t, d, "private", `{"ring_size":"64KiB","durability":"sync"}`)
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"secret":1}`), nil).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	opts.Decode(&m)
	// Make the parent directories passable, so that only the files' own
	// modes stand in the way.
	for _, dir := range []string{m["root_path"], filepath.Dir(m["root_path"]), m["shm_path"]} {
		os.Chmod(dir, 0o755)
	}
	rings, _ := filepath.Glob(filepath.Join(m["shm_path"], "dshm.*"))
	logs, _ := filepath.Glob(filepath.Join(m["root_path"], "topics", "private", "partitions", "0", "*"))
	files := append(rings, logs...)
	if len(rings) == 0 || len(logs) == 0 {
		t.Fatalf("rings %v, log files %v: want some of each", rings, logs)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			continue
		}
		cmd := exec.Command("cat", f)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		cmd.Stdout = io.Discard
		out := &strings.Builder{}
		cmd.Stderr = out
		if err := cmd.Run(); err == nil {
			t.Errorf("user %s could read %s", testutil.UnprivilegedUserName, f)
		} else if !strings.Contains(out.String(), "Permission denied") {
			t.Errorf("reading %s as %s failed, but not for lack of permission: %v %s", f, testutil.UnprivilegedUserName, err, out)
		}
	}
}
