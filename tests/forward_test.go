package tests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/kafka"
)

// forwardPattern is the data of event i of the forwarding test.
func forwardPattern(i int) []byte {
	b := make([]byte, (i%5)*97+1)
	for k := range b {
		b[k] = byte(i*13 + k)
	}
	return b
}

// TestForwarderLosesNothingAndRepeatsNothingAcrossKill9 forwards a stream
// from an shm topic to a kafka topic (kfake, on loopback) while the
// forwarder process is killed with SIGKILL again and again, mid-stream,
// and restarted; at the end every event is at the destination exactly
// once, with its bytes.
func TestForwarderLosesNothingAndRepeatsNothingAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the command")
	}
	bin := buildShmctl(t)
	brokers := kfakeBrokers(t)
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-fwd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shmDir)
	topRoot := t.TempDir()
	src, err := diaspora.NewDriver("shm", diaspora.MustMetadata(fmt.Sprintf(`{"root_path": %q, "shm_path": %q}`, topRoot, shmDir)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.CreateTopic("frames", diaspora.MustMetadata(`{"num_partitions": 2, "durability": "async", "ring_size": "1MiB"}`)); err != nil {
		t.Fatal(err)
	}
	dst, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(`{"kafka": {"bootstrap.servers": %q}, "namespace": "fwd"}`, brokers)))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.CreateTopic("frames", diaspora.MustMetadata(`{"num_partitions": 2}`)); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "forward.toml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
[drivers.local]
type = "shm"
root_path = %q
shm_path = %q

[drivers.remote]
type = "kafka"
namespace = "fwd"
[drivers.remote.kafka]
"bootstrap.servers" = %q

[[forward]]
from = "local/frames"
to = "remote/frames"
`, topRoot, shmDir, brokers)), 0o644); err != nil {
		t.Fatal(err)
	}

	const n = 6000
	th, err := src.OpenTopic("frames")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	produceErr := make(chan error, 1)
	go func() { // the stream, while the forwarder comes and goes
		defer wg.Done()
		p, err := th.Producer("sim")
		if err != nil {
			produceErr <- err
			return
		}
		for i := range n {
			if _, err := p.PushTo(i%2, diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{forwardPattern(i)}).Wait(time.Minute); err != nil {
				produceErr <- fmt.Errorf("push %d: %w", i, err)
				return
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		produceErr <- p.Close()
	}()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for kills < 6 {
		cmd := exec.Command(bin, "forward", "--config", config, "--json", "--batch", "64")
		// Most kills land between a batch's write and its acknowledgement.
		cmd.Env = append(os.Environ(), "DSHM_TEST_FORWARD_ACK_DELAY=30ms")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
	}
	wg.Wait()
	if err := <-produceErr; err != nil {
		t.Fatal(err)
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	// The last run goes to the end of the stream and stops by itself.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	last := exec.CommandContext(ctx, bin, "forward", "--config", config, "--json")
	out, err := last.CombinedOutput()
	if err != nil {
		t.Fatalf("the last forwarder: %v\n%s", err, out)
	}
	t.Logf("after %d kills, the last run said:\n%s", kills, lastLines(string(out), 3))
	if final := lastLines(string(out), 1); !strings.Contains(final, `"lag":0,`) || !strings.Contains(final, `"done":true`) {
		t.Fatalf("the last progress line %s: want the final one, with lag 0 (every source event acknowledged)", final)
	}

	dt, err := dst.OpenTopic("frames")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dt.Consumer("check", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := make([]int, n)
	total := 0
	for {
		ev, err := c.Pull().Wait(3 * time.Second)
		if err != nil {
			break // nothing more within 3 s
		}
		var m struct{ I int }
		if err := ev.Metadata().Decode(&m); err != nil || m.I < 0 || m.I >= n {
			t.Fatalf("destination event %d: metadata %s (%v)", ev.ID(), ev.Metadata(), err)
		}
		if !bytes.Equal(ev.Data().Bytes(), forwardPattern(m.I)) {
			t.Fatalf("event i=%d arrived with other bytes", m.I)
		}
		seen[m.I]++
		total++
	}
	var lost, twice []int
	for i, k := range seen {
		switch {
		case k == 0:
			lost = append(lost, i)
		case k > 1:
			twice = append(twice, i)
		}
	}
	if len(lost) > 0 || len(twice) > 0 {
		t.Fatalf("after %d kills: %d events at the destination for %d; lost %d (first %v), written twice %d (first %v)",
			kills, total, n, len(lost), head(lost), len(twice), head(twice))
	}
}

// buildShmctl builds diaspora-shmctl for the test.
func buildShmctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "diaspora-shmctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/diaspora-shmctl")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/diaspora-shmctl: %v\n%s", err, out)
	}
	return bin
}

// kfakeBrokers starts a Kafka-protocol cluster on loopback for the test.
func kfakeBrokers(t *testing.T) string {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return strings.Join(cluster.ListenAddrs(), ",")
}

func head(v []int) []int { return v[:min(len(v), 10)] }

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-k):], "\n")
}

// TestForwardKafkaToKafkaThroughIdleGaps forwards a kafka topic of 2
// partitions to one of 3, with pauses in the stream (the forwarder's pulls
// time out again and again) and one kill in the middle: every event
// arrives once.
func TestForwardKafkaToKafkaThroughIdleGaps(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the command")
	}
	bin := buildShmctl(t)
	brokers := kfakeBrokers(t)
	d, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(`{"kafka": {"bootstrap.servers": %q}}`, brokers)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateTopic("src", diaspora.MustMetadata(`{"num_partitions": 2}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateTopic("dst", diaspora.MustMetadata(`{"num_partitions": 3}`)); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "forward.toml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[drivers.k]
type = "kafka"
[drivers.k.kafka]
"bootstrap.servers" = %q

[[forward]]
from = "k/src"
to = "k/dst"
`, brokers)), 0o644)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "forward", "--config", config, "--json")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	fwd := start()
	th, _ := d.OpenTopic("src")
	p, _ := th.Producer("p")
	const n = 400
	for i := range n {
		if _, err := p.PushTo(i%2, diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{forwardPattern(i)}).Wait(time.Minute); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			time.Sleep(300 * time.Millisecond) // idle: pulls time out
		}
		if i == 250 {
			fwd.Process.Signal(syscall.SIGKILL)
			fwd.Wait()
			fwd = start()
		}
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fwd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the forwarder: %v", err)
		}
	case <-time.After(2 * time.Minute):
		fwd.Process.Kill()
		t.Fatal("the forwarder did not stop at the end of its source's stream")
	}
	dt, _ := d.OpenTopic("dst")
	c, err := dt.Consumer("check", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := make([]int, n)
	for {
		ev, err := c.Pull().Wait(2 * time.Second)
		if err != nil {
			break
		}
		var m struct{ I int }
		if err := ev.Metadata().Decode(&m); err != nil || m.I < 0 || m.I >= n || !bytes.Equal(ev.Data().Bytes(), forwardPattern(m.I)) {
			t.Fatalf("destination event %d: %s (%v)", ev.ID(), ev.Metadata(), err)
		}
		seen[m.I]++
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("event %d arrived %d times", i, k)
		}
	}
}
