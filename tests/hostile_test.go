package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
	"github.com/diaspora-shm/diaspora/internal/testutil"
)

// hostileEnv is a root private to this user and a shm directory shared
// with every user (1777, as /dev/shm is).
func hostileEnv(t *testing.T) *faultEnv {
	t.Helper()
	root, err := os.MkdirTemp("", "dshm-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	if err := os.Chmod(shmDir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return envAt(root, shmDir)
}

// asUser runs a command as uid/gid and fails the test if it fails.
func asUser(t *testing.T, uid, gid uint32, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v as uid %d: %v: %s", name, args, uid, err, out)
	}
}

// openOnce opens the topic once (creating its rings) and pushes one event,
// then closes; it returns partition 0's ring path.
func openOnce(t *testing.T, env *faultEnv, topic string) string {
	t.Helper()
	d := env.driver(t)
	th, err := d.OpenTopic(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"mine":1}`), nil).Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.Close()
	rings := env.ringFiles()
	if len(rings) != 1 {
		t.Fatalf("want one ring, got %v", rings)
	}
	return rings[0]
}

// Another user puts a ring file of theirs (or a symbolic link to one) at
// the name of a 0600 topic's ring once it is gone: the owner's processes
// refuse it, naming the file and its owner, and write nothing into it.
func TestHostileRingTakeoverIsRefused(t *testing.T) {
	uid, gid := testutil.UnprivilegedUser(t)
	for _, how := range []string{"copy", "symlink"} {
		t.Run(how, func(t *testing.T) {
			env := hostileEnv(t)
			env.createTopic(t, "victim", `{"ring_size":"64KiB","durability":"none"}`)
			ringPath := openOnce(t, env, "victim")
			// The intruder's own ring file, of the same geometry.
			theirs, err := os.MkdirTemp("", "dshm-intruder-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(theirs) })
			os.Chmod(theirs, 0o777)
			template, _ := os.ReadFile(ringPath)
			tmpl := filepath.Join(theirs, "template")
			os.WriteFile(tmpl, template, 0o644)
			env.reboot(t) // the ring is gone (ring clean, a reboot)
			forged := filepath.Join(theirs, "forged")
			asUser(t, uid, gid, "cp", tmpl, forged)
			asUser(t, uid, gid, "chmod", "0666", forged)
			if how == "copy" {
				asUser(t, uid, gid, "cp", forged, ringPath)
				asUser(t, uid, gid, "chmod", "0666", ringPath)
			} else {
				asUser(t, uid, gid, "ln", "-s", forged, ringPath)
			}
			before, _ := os.ReadFile(forged)
			d := env.driver(t)
			defer d.Close()
			_, err = d.OpenTopic("victim")
			if err == nil {
				t.Fatal("the owner opened a topic whose ring another user planted")
			}
			t.Logf("refused: %v", err)
			want := fmt.Sprintf("belongs to uid %d", uid)
			if how == "symlink" {
				want = "symbolic link"
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			after, _ := os.ReadFile(forged)
			if !bytes.Equal(before, after) {
				t.Error("the owner's process wrote into the intruder's file")
			}
		})
	}
}

// A symbolic link planted at a ring's sidecar name is not written through:
// the file it points at keeps its bytes and mode, and the topic works.
func TestHostileSidecarSymlinkIsNotFollowed(t *testing.T) {
	uid, gid := testutil.UnprivilegedUser(t)
	env := hostileEnv(t)
	env.createTopic(t, "victim", `{"ring_size":"64KiB","durability":"none"}`)
	ringPath := openOnce(t, env, "victim")
	env.reboot(t)
	precious := filepath.Join(env.root, "precious")
	if err := os.WriteFile(precious, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	asUser(t, uid, gid, "ln", "-s", precious, ringPath+".json")
	d := env.driver(t)
	defer d.Close()
	th, err := d.OpenTopic("victim")
	if err != nil {
		t.Fatalf("open with a planted sidecar link: %v", err)
	}
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"after":1}`), nil).Wait(5 * time.Second); err != nil {
		t.Fatalf("push: %v", err)
	}
	b, _ := os.ReadFile(precious)
	st, _ := os.Stat(precious)
	if string(b) != "keep me" || st.Mode().Perm() != 0o600 {
		t.Fatalf("the link's target was written through: %q, mode %v", b, st.Mode().Perm())
	}
}

// A topic whose mode is "0660" is shared with the group of its directory:
// two unprivileged members of one group produce to and consume from it,
// each creating files the other then uses.
func TestGroupSharedTopicAcrossTwoUsers(t *testing.T) {
	users := testutil.GroupMembers(t)
	bin := testutil.ReachableCopy(t)
	base, err := os.MkdirTemp("", "dshm-group-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	// A project directory of the group, as HPC sites set them up: owned by
	// the first user, the group's, setgid, no access for others.
	root := filepath.Join(base, "project")
	os.Mkdir(root, 0o770)
	os.Chown(root, int(users[0].UID), int(users[0].SharedGroupID))
	os.Chmod(root, 0o770|os.ModeSetgid)
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-group-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	os.Chmod(shmDir, 0o777|os.ModeSticky)
	env := envAt(root, shmDir)
	cred := func(u testutil.GroupMember) *syscall.Credential {
		return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.SharedGroupID}}
	}
	base1 := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=shared", "HOME=/nonexistent"}
	run := func(u testutil.GroupMember, role, name string, extra ...string) *collected {
		t.Helper()
		var out collected
		p := spawnBin(t, bin, role, name, 0, append(append([]string{}, base1...), extra...), cred(u), out.add)
		if err := p.waitExit(60 * time.Second); err != nil {
			t.Fatalf("%s %s as %s: %v\n%s\nstderr: %s", role, name, u.Name, err, strings.Join(out.lines, "\n"), p.stderr.String())
		}
		if l := out.find("error", "") + out.find("fail", ""); l != "" {
			t.Fatalf("%s %s as %s: %s", role, name, u.Name, l)
		}
		return &out
	}
	run(users[0], "create", "", `DSHM_TOPIC_OPTS={"mode":"0660","durability":"async","ring_size":"64KiB"}`)
	// The second user opens first: it creates the ring and the log's files.
	if n := run(users[1], "producer", "b", "DSHM_MAX=20", "DSHM_PAUSE_US=0").count("done "); n != 20 {
		t.Fatalf("the group member pushed %d of 20 events", n)
	}
	if n := run(users[0], "consumer", "owner", "DSHM_MAX=20", "DSHM_ACK_EVERY=1", "DSHM_ERR_EXIT=1").count("got "); n != 20 {
		t.Fatalf("the owner received %d of the member's 20 events", n)
	}
	if n := run(users[0], "producer", "a", "DSHM_MAX=10", "DSHM_PAUSE_US=0").count("done "); n != 10 {
		t.Fatalf("the owner pushed %d of 10 events", n)
	}
	if n := run(users[1], "consumer", "member", "DSHM_MAX=30", "DSHM_ACK_EVERY=1", "DSHM_ERR_EXIT=1").count("got "); n != 30 {
		t.Fatalf("the member received %d of 30 events", n)
	}
}

// driverOf opens the concrete driver, for DeleteTopic.
func driverOf(t *testing.T, env *faultEnv) *driver.Driver {
	t.Helper()
	d, err := driver.Open(env.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// collect starts a child and gathers its lines.
type collected struct {
	mu    sync.Mutex
	lines []string
}

func (c *collected) add(_ *proc, l string) { c.mu.Lock(); c.lines = append(c.lines, l); c.mu.Unlock() }
func (c *collected) find(prefix, with string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, with) {
			return l
		}
	}
	return ""
}
func (c *collected) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A live producer process protects its topic from delete without force,
// also under durability none (no archiver, no reader); with force, the
// producer and a consumer are told the topic was deleted.
func TestDeleteSeesLiveProducersAndTellsUsers(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "t", `{"ring_size":"64KiB","durability":"none"}`)
	var prod, cons collected
	base := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t"}
	pp := spawn(t, "producer", "p", 0, append(base, "DSHM_PAUSE_US=5000", "DSHM_WINDOW=1"), nil, prod.add)
	waitFor(t, 10*time.Second, "the producer pushes", func() bool { return prod.count("done ") > 0 })
	d := driverOf(t, env)
	err := driver.DeleteTopic(d, "t", false)
	if err == nil || !strings.Contains(err.Error(), "producer") {
		t.Fatalf("delete under a live producer process: want an error naming it, got %v", err)
	}
	cp := spawn(t, "consumer", "c", 0, append(base, "DSHM_ACK_EVERY=0", "DSHM_ERR_EXIT=1"), nil, cons.add)
	waitFor(t, 10*time.Second, "the consumer receives", func() bool { return cons.count("got ") > 0 })
	if err := driver.DeleteTopic(d, "t", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the producer is told", func() bool { return prod.find("fail", "deleted") != "" })
	waitFor(t, 10*time.Second, "the consumer is told", func() bool { return cons.find("error", "deleted") != "" })
	t.Logf("producer: %s", prod.find("fail", "deleted"))
	t.Logf("consumer: %s", cons.find("error", "deleted"))
	pp.kill()
	cp.kill()
}

// delete --force, then create again: a process of the old incarnation
// must not archive its events into the new topic's log.
func TestOldIncarnationDoesNotArchiveIntoTheNewTopic(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "t", `{"ring_size":"1MiB","durability":"async"}`)
	var prod collected
	base := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t"}
	pp := spawn(t, "producer", "old", 0, append(base, "DSHM_PAUSE_US=200", "DSHM_WINDOW=16"), nil, prod.add)
	waitFor(t, 10*time.Second, "the old producer pushes", func() bool { return prod.count("done ") > 100 })
	d := driverOf(t, env)
	if err := driver.DeleteTopic(d, "t", true); err != nil {
		t.Fatal(err)
	}
	env.createTopic(t, "t", `{"ring_size":"1MiB","durability":"async"}`)
	nd := env.driver(t)
	defer nd.Close()
	th, err := nd.OpenTopic("t")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("new")
	if _, err := p.Push(diaspora.MustMetadata(`{"new":1}`), nil).Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close()
	time.Sleep(500 * time.Millisecond) // the old archiver had time to do harm
	pp.kill()
	nd.Close()
	// Read the new topic's history from its log alone: the ring is gone.
	env.reboot(t)
	rd := env.driver(t)
	defer rd.Close()
	th, err = rd.OpenTopic("t")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("audit")
	var got []string
	for {
		ev, err := c.Pull().Wait(500 * time.Millisecond)
		if err != nil {
			break
		}
		got = append(got, ev.Metadata().Dump())
	}
	if len(got) != 1 || got[0] != `{"new":1}` {
		n := len(got)
		if n > 3 {
			got = got[:3]
		}
		t.Fatalf("the new topic's log holds %d events (first %v), want only its own one", n, got)
	}
}

// One name is one cursor across processes: a consumer of a name held by a
// live consumer in another process is refused, naming that process.
func TestConsumerNameHeldByAnotherProcessIsRefused(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "t", `{"ring_size":"64KiB","durability":"none"}`)
	var cons collected
	base := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t"}
	cp := spawn(t, "consumer", "ana", 0, append(base, "DSHM_ACK_EVERY=0"), nil, cons.add)
	d := env.driver(t)
	defer d.Close()
	th, err := d.OpenTopic("t")
	if err != nil {
		t.Fatal(err)
	}
	// Probing for the name before the child holds it would take it from
	// the child, which then exits refused: the child first reads an event.
	p, err := th.Producer("probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.Metadata{}, nil).Wait(-1); err != nil {
		t.Fatal(err)
	}
	p.Close()
	waitFor(t, 30*time.Second, "the child's consumer reads an event", func() bool { return cons.count("got ") > 0 })
	var last error
	waitFor(t, 10*time.Second, "the child's consumer holds the name", func() bool {
		c, err := th.Consumer("ana")
		if err == nil {
			c.Close()
			return false
		}
		last = err
		return true
	})
	if want := fmt.Sprintf("pid %d", cp.cmd.Process.Pid); !strings.Contains(last.Error(), want) {
		t.Fatalf("refusal %q does not name the holder (%s)", last, want)
	}
	cp.kill()
	waitFor(t, 10*time.Second, "the name is free once its holder died", func() bool {
		c, err := th.Consumer("ana")
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// A ring of another topic put at this topic's ring name (a hard link by a
// member of its group, or a copy; same owner and mode, so the file checks
// pass) is refused: the ring records the topic and partition it is for.
func TestRingOfAnotherTopicAtTheNameIsRefused(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "a", `{"ring_size":"64KiB","durability":"none"}`)
	ringA := openOnce(t, env, "a")
	env.createTopic(t, "b", `{"ring_size":"64KiB","durability":"none"}`)
	d := env.driver(t)
	th, err := d.OpenTopic("b")
	if err != nil {
		t.Fatal(err)
	}
	_ = th
	d.Close()
	var ringB string
	for _, r := range env.ringFiles() {
		if r != ringA {
			ringB = r
		}
	}
	if ringB == "" {
		t.Fatalf("no ring of topic b among %v", env.ringFiles())
	}
	os.Remove(ringB)
	if err := os.Link(ringA, ringB); err != nil {
		t.Fatal(err)
	}
	d = env.driver(t)
	defer d.Close()
	_, err = d.OpenTopic("b")
	if err == nil || !strings.Contains(err.Error(), "belongs to topic id") {
		t.Fatalf("open of a topic whose ring name holds topic a's ring: want a refusal, got %v", err)
	}
}
