package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// mountTmpfs mounts a tmpfs of size at a new directory, or skips the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs at %s (%v: %s): this fault needs root and mount(8)", size, dir, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,%s %s: %v: %s", opts, dir, err, out)
	}
}

// TestFaultDiskFull fills the disk of the log under sync: pushes must fail
// with an error within their timeout (not hang), every push that completed
// must be read back after the rings are lost, and once space is back a new
// producer and consumer make progress.
func TestFaultDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "2m")
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-fault-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	env := envAt(filepath.Join(mnt, "root"), shmDir)
	env.createTopic(t, "full", `{"ring_size":"256KiB","durability":"sync","segment_size":"1MiB","push_timeout":"2s"}`)
	w := newWorld(t)
	defer w.report()
	d := env.driver(t)
	th, err := d.OpenTopic("full")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("p")
	var failure error
	for i := 0; i < 10000 && failure == nil; i += 8 {
		var fs []diaspora.Future[diaspora.EventID]
		for k := i; k < i+8; k++ {
			fs = append(fs, p.Push(payloadMeta("p", 0, k), diaspora.DataView{payload("p", 0, k)}))
		}
		start := time.Now()
		for k, f := range fs {
			id, err := f.Wait(max(time.Millisecond, 5*time.Second-time.Since(start)))
			if err != nil {
				failure = err
				continue
			}
			c := content{payloadKey{"p", 0, i + k}.String(), crcOf(payload("p", 0, i+k))}
			w.mu.Lock()
			w.done[evKey{0, id}] = c
			w.observe(evKey{0, id}, c, "producer")
			w.mu.Unlock()
		}
		if took := time.Since(start); took > 7*time.Second {
			t.Errorf("pushes on a full disk took %v: they hang", took)
		}
	}
	if failure == nil {
		t.Fatal("10000 pushes of 1 KiB on average fitted on a 2 MiB disk under sync")
	}
	t.Logf("push on a full disk: %v", failure)
	if !errors.Is(failure, diaspora.ErrTimeout) && !strings.Contains(failure.Error(), "space") {
		t.Errorf("push on a full disk failed with %q: want a timeout waiting for the log or a no-space error", failure)
	}
	p.Close()
	d.Close()
	env.reboot(t)
	seen := w.audit(env, "full", "after-full", time.Second, diaspora.MustMetadata(`{}`))
	if lost := w.lost(seen, nil); len(lost) > 0 {
		t.Errorf("%d pushes completed under sync before the disk was full are gone: %v", len(lost), lost[:min(10, len(lost))])
	}
	remount(t, mnt, "size=64m")
	if err := w.progressCheck(env, "full", "space-back", 10*time.Second); err != nil {
		t.Errorf("after space came back: %v", err)
	}
}

// TestFaultReadOnlyRoot: the root path's file system goes read-only under a
// sync and an async topic. Sync pushes must fail within push_timeout with an
// error, async ones complete, acknowledging fails with an error naming the
// file; after it is writable again, both make progress.
func TestFaultReadOnlyRoot(t *testing.T) {
	mnt := mountTmpfs(t, "16m")
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-fault-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	env := envAt(filepath.Join(mnt, "root"), shmDir)
	w := newWorld(t)
	defer w.report()
	for _, dur := range []string{"sync", "async"} {
		env.createTopic(t, dur, fmt.Sprintf(`{"ring_size":"64KiB","durability":%q,"push_timeout":"2s"}`, dur))
	}
	remount(t, mnt, "ro")
	d := env.driver(t)
	for _, dur := range []string{"sync", "async"} {
		th, err := d.OpenTopic(dur)
		if err != nil {
			t.Errorf("%s: open topic on a read-only root (rings in shm are writable): %v", dur, err)
			continue
		}
		p, _ := th.Producer("p")
		start := time.Now()
		// Without a limit of its own, Wait is bounded by one push_timeout
		// (2s), and says why the log cannot be written.
		id, err := p.Push(payloadMeta("p", 0, 0), diaspora.DataView{payload("p", 0, 0)}).Wait(-1)
		took := time.Since(start)
		switch {
		case took > 3500*time.Millisecond:
			t.Errorf("%s: push on a read-only root took %v to give up, push_timeout is 2s", dur, took)
		case dur == "sync" && err == nil:
			t.Errorf("sync: push completed (ID %d) although the log cannot be written", id)
		case dur == "sync":
			t.Logf("sync push on a read-only root: %v (after %v)", err, took)
			if !strings.Contains(err.Error(), `"sync"`) || !strings.Contains(err.Error(), "read-only file system") {
				t.Errorf("sync: push error %q does not name the topic and the archiver's cause (read-only file system)", err)
			}
		case err != nil:
			t.Errorf("async: push failed on a read-only root: %v (the ring is writable)", err)
		}
		c, _ := th.Consumer("c", diaspora.FullDataSelector, diaspora.BytesAllocator)
		ev, err := c.Pull().Wait(5 * time.Second)
		if err != nil {
			t.Errorf("%s: pull on a read-only root: %v", dur, err)
			continue
		}
		if _, _, err := checkEvent(ev); err != nil {
			t.Errorf("%s: %v", dur, err)
		}
		err = ev.Acknowledge()
		t.Logf("%s: acknowledge on a read-only root: %v", dur, err)
		if err == nil || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), `"c"`) {
			t.Errorf("%s: acknowledge on a read-only root gave %v: want an error naming the consumer and the cause", dur, err)
		}
	}
	d.Close()
	remount(t, mnt, "rw")
	for _, dur := range []string{"sync", "async"} {
		if err := w.progressCheck(env, dur, "rw-again", 10*time.Second); err != nil {
			t.Errorf("%s: after the root is writable again: %v", dur, err)
		}
	}
}

// logTemplate builds, once per test, a root holding a topic "log" whose
// partition 0 log spans several 1 MiB segments, and returns it with the
// content of every event by ID.
func logTemplate(t *testing.T) (string, map[uint64]string, []string) {
	t.Helper()
	env := newFaultEnv(t)
	env.createTopic(t, "log", `{"ring_size":"256KiB","durability":"async","segment_size":"1MiB"}`)
	d := env.driver(t)
	th, _ := d.OpenTopic("log")
	p, _ := th.Producer("p", diaspora.BatchSize(32))
	want := map[uint64]string{}
	var fs []diaspora.Future[diaspora.EventID]
	const n = 3000
	for i := 0; i < n; i++ {
		fs = append(fs, p.Push(payloadMeta("p", 0, i), diaspora.DataView{payload("p", 0, i)}))
	}
	for i, f := range fs {
		id, err := f.Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = payloadKey{"p", 0, i}.String()
	}
	p.Close()
	d.Close()
	segs, _ := filepath.Glob(filepath.Join(env.partitionDir("log", 0), strings.Repeat("[0-9]", 20)))
	sort.Strings(segs)
	if len(segs) < 2 {
		t.Fatalf("want a log of several segments, got %v", segs)
	}
	return env.root, want, segs
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
}

// TestFaultLogTruncatedOrFlipped damages a copy of a log many times (a
// segment cut at a random offset, or random bits flipped), with the rings
// gone so that everything is read from the log. Whatever is read must carry
// the bytes pushed under its ID; damage must come out as an error saying
// where, or (a cut or damaged end of the last segment only) as a torn tail
// cut back; damage in a sealed segment must never lose events silently.
// Afterwards a new producer and consumer make progress.
func TestFaultLogTruncatedOrFlipped(t *testing.T) {
	seed := seedFor(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	tmplRoot, want, segs := logTemplate(t)
	trials := 16
	if soak > 0 {
		trials = 300
	}
	var reported, tailCuts, clean int
	for trial := 0; trial < trials; trial++ {
		root := filepath.Join(t.TempDir(), "root")
		copyTree(t, tmplRoot, root)
		shmDir, err := os.MkdirTemp("/dev/shm", "dshm-fault-")
		if err != nil {
			t.Fatal(err)
		}
		env := envAt(root, shmDir)
		si := rng.IntN(len(segs))
		last := si == len(segs)-1
		path := filepath.Join(env.partitionDir("log", 0), filepath.Base(segs[si]))
		st, _ := os.Stat(path)
		var fault string
		if rng.IntN(3) == 0 {
			off := rng.Int64N(st.Size())
			os.Truncate(path, off)
			fault = fmt.Sprintf("segment %d/%d cut at %d of %d", si+1, len(segs), off, st.Size())
		} else {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			nflip := 1 + rng.IntN(4)
			off := rng.Int64N(st.Size())
			for k := 0; k < nflip; k++ {
				o := min(st.Size()-1, off+rng.Int64N(64))
				b := []byte{0}
				f.ReadAt(b, o)
				b[0] ^= 1 << rng.IntN(8)
				f.WriteAt(b, o)
			}
			f.Close()
			fault = fmt.Sprintf("segment %d/%d: %d bits flipped near offset %d of %d", si+1, len(segs), nflip, off, st.Size())
		}
		got, readErr := readAll(t, env, "log")
		var prev int64 = -1
		var wrong []string
		for _, g := range got {
			if int64(g.id) <= prev {
				wrong = append(wrong, fmt.Sprintf("ID %d after %d", g.id, prev))
			}
			prev = int64(g.id)
			if g.err != nil {
				wrong = append(wrong, g.err.Error())
			} else if want[g.id] != g.key {
				wrong = append(wrong, fmt.Sprintf("event %d is %s, %s was pushed under that ID", g.id, g.key, want[g.id]))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("%s: damaged data returned as events: %v", fault, wrong[:min(5, len(wrong))])
		}
		missing := len(want) - len(got)
		prefix := len(got) == 0 || got[len(got)-1].id == uint64(len(got)-1)
		switch {
		case readErr != nil:
			reported++
			msg := readErr.Error()
			if !strings.Contains(msg, "corrupt") || !strings.Contains(msg, "offset") || !strings.Contains(msg, filepath.Base(path)[:10]) {
				t.Errorf("%s: error %q does not say what is damaged and where (file, offset)", fault, msg)
			}
		case missing == 0:
			clean++ // the damage hit nothing that is read (e.g. padding)
		case last && prefix:
			tailCuts++
		default:
			t.Errorf("%s: %d of %d events silently missing (no error), read %d", fault, missing, len(want), len(got))
		}
		w := newWorld(t)
		if err := w.progressCheck(env, "log", fmt.Sprint(trial), 10*time.Second); err != nil {
			t.Errorf("%s: a new producer and consumer cannot make progress (the topic is wedged until someone repairs the log by hand): %v", fault, err)
		}
		os.RemoveAll(shmDir)
		os.RemoveAll(root)
	}
	t.Logf("RESULT log damage: trials=%d reported_with_location=%d torn_tail_cut=%d no_effect=%d", trials, reported, tailCuts, clean)
}

type readEvent struct {
	id  uint64
	key string
	err error
}

// readAll reads every event of a topic under a new consumer name until an
// error or one quiet second.
func readAll(t *testing.T, env *faultEnv, topic string) ([]readEvent, error) {
	d, err := diaspora.NewDriver("shm", env.opts)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	th, err := d.OpenTopic(topic)
	if err != nil {
		return nil, err
	}
	c, err := th.Consumer("reader", diaspora.FullDataSelector, diaspora.BytesAllocator)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []readEvent
	for {
		ev, err := c.Pull().Wait(time.Second)
		if errors.Is(err, diaspora.ErrTimeout) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		k, _, cerr := checkEvent(ev)
		out = append(out, readEvent{ev.ID(), k.String(), cerr})
	}
}
