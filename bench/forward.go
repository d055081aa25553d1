package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/kafka"
)

// `bench forward`: diaspora-shmctl forward from an shm topic to a kafka
// topic on kfake (a Kafka-protocol cluster inside this process), beside
// the shm stream of the same events in the same run.

type forwardOptions struct {
	Reps   int
	Sizes  []string
	Events map[int]int
}

func forwardCmd(args []string) error {
	fs := pflag.NewFlagSet("forward", pflag.ContinueOnError)
	var o forwardOptions
	fs.IntVar(&o.Reps, "reps", 3, "runs of each case, interleaved; medians are quoted")
	fs.StringSliceVar(&o.Sizes, "sizes", []string{"64", "1MiB"}, "event sizes")
	n64 := fs.Int("events", 200_000, "events of 64 B (1 MiB runs take 200)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "diaspora-bench-forward-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "diaspora-shmctl")
	fmt.Fprintln(os.Stderr, "bench forward: building diaspora-shmctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/diaspora-shmctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r := &langRun{self: self, tmp: tmp}
	type row struct {
		name  string
		size  int
		rates []float64
	}
	var rows []*row
	for _, s := range o.Sizes {
		size, err := parseSizeFlag(s)
		if err != nil {
			return err
		}
		n := *n64
		if size >= 1<<20 {
			n = 200
		}
		c := langCase{Size: int(size), N: n, Warm: n / 10, Ring: "256MiB"}
		if size >= 1<<20 {
			c.AckEvery = 1
		}
		shmRow := &row{name: sizeName(int(size)) + " shm: Go producer → Go consumer", size: int(size)}
		fwdRow := &row{name: sizeName(int(size)) + " shm → diaspora-shmctl forward → kafka (kfake)", size: int(size)}
		rows = append(rows, shmRow, fwdRow)
		for rep := 1; rep <= o.Reps; rep++ {
			fmt.Fprintf(os.Stderr, "bench forward: run %d/%d: %s\n", rep, o.Reps, sizeName(int(size)))
			rate, err := goToGo(r, c)
			if err != nil {
				return fmt.Errorf("%s: %w", shmRow.name, err)
			}
			shmRow.rates = append(shmRow.rates, rate)
			rate, err = r.forwardOnce(bin, c)
			if err != nil {
				return fmt.Errorf("%s: %w", fwdRow.name, err)
			}
			fwdRow.rates = append(fwdRow.rates, rate)
		}
	}
	fmt.Printf("\n%-58s %12s %10s %10s\n", fmt.Sprintf("case (median of %d interleaved runs)", o.Reps), "events/s", "MB/s", "× shm")
	for i, rw := range rows {
		m := median(rw.rates)
		ratio := ""
		if i%2 == 1 {
			var rs []float64
			for k := range rw.rates {
				rs = append(rs, rw.rates[k]/rows[i-1].rates[k])
			}
			ratio = fmt.Sprintf("%.2f", median(rs))
		}
		fmt.Printf("%-58s %12s %10.0f %10s\n", rw.name, humanRate(m), m*float64(rw.size)/1e6, ratio)
	}
	fmt.Println("\nkfake keeps the records in this process's memory and runs on the same two cores as the producer,")
	fmt.Println("the forwarder and the reader: a real cluster is bound by its network and disks instead (README).")
	return nil
}

// forwardOnce streams c.N+c.Warm events into an shm topic while a
// forwarder process copies them to a kafka topic on a fresh kfake
// cluster; the rate is the destination's, from its first timed event to
// its last.
func (r *langRun) forwardOnce(bin string, c langCase) (float64, error) {
	drv, root, shmDir, cleanup, err := r.topicDirs(c.Ring)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return 0, err
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	dst, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(`{"kafka": {"bootstrap.servers": %q}}`, brokers)))
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	if err := dst.CreateTopic("bench", diaspora.MustMetadata(`{"max_message_bytes": 8388608}`)); err != nil {
		return 0, err
	}
	dt, err := dst.OpenTopic("bench")
	if err != nil {
		return 0, err
	}
	reader, err := dt.Consumer("reader", diaspora.FullDataSelector)
	if err != nil {
		return 0, err
	}
	defer reader.Close()
	config := filepath.Join(root, "forward.toml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`[drivers.local]
type = "shm"
root_path = %q
shm_path = %q

[drivers.remote]
type = "kafka"
[drivers.remote.kafka]
"bootstrap.servers" = %q

[[forward]]
from = "local/bench"
to = "remote/bench"
`, root, shmDir, brokers)), 0o644); err != nil {
		return 0, err
	}
	fwd := exec.Command(bin, "forward", "--config", config)
	fwd.Stderr = os.Stderr
	if err := fwd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		fwd.Process.Signal(syscall.SIGTERM)
		fwd.Wait()
	}()
	prod, err := r.runner().spawn("producer", goProducer(drv, c), nil)
	if err != nil {
		return 0, err
	}
	// From the destination's first event to its last: the reader's client
	// prefetches, so a later start would time its buffer, not the stream.
	total := c.N + c.Warm
	var start time.Time
	for k := range total {
		if k == 1 {
			start = time.Now()
		}
		ev, err := reader.Pull().Wait(2 * time.Minute)
		if err != nil {
			prod.kill()
			return 0, fmt.Errorf("the destination's event %d of %d: %w", k, total, err)
		}
		if k%4096 == 0 {
			ev.Acknowledge()
		}
	}
	secs := time.Since(start).Seconds()
	var pr ProducerResult
	if err := prod.wait(&pr); err != nil {
		return 0, err
	}
	return float64(total-1) / secs, nil
}
