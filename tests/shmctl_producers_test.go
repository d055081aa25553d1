package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A live producer process (durability none: no archiver, no reader) shows
// in ring ls and ring inspect, and protects its topic from topic delete.
func TestShmctlShowsLiveProducers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	bin := buildShmctl(t)
	env := newFaultEnv(t)
	env.createTopic(t, "t", `{"ring_size":"64KiB","durability":"none"}`)
	var prod collected
	pp := spawn(t, "producer", "sim", 0, []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t", "DSHM_PAUSE_US=5000", "DSHM_WINDOW=1"}, nil, prod.add)
	waitFor(t, 10*time.Second, "the producer pushes", func() bool { return prod.count("done ") > 0 })
	ctl := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--root", env.root, "--driver.shm_path", env.shm}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	pid := fmt.Sprint(pp.cmd.Process.Pid)
	out, err := ctl("ring", "ls")
	if err != nil || !strings.Contains(out, pid) {
		t.Fatalf("ring ls does not show the producer's pid %s: %v\n%s", pid, err, out)
	}
	out, err = ctl("ring", "inspect", "t/0")
	if err != nil || !strings.Contains(out, "producers:") || !strings.Contains(out, "sim") || !strings.Contains(out, pid) {
		t.Fatalf("ring inspect does not list the producer: %v\n%s", err, out)
	}
	if !strings.Contains(out, "readers:           none") {
		t.Fatalf("ring inspect counts the producer as a reader:\n%s", out)
	}
	out, err = ctl("topic", "delete", "t")
	if err == nil || !strings.Contains(out, "producer") {
		t.Fatalf("topic delete under a live producer: want a refusal naming it, got %v\n%s", err, out)
	}
	pp.kill()
}
