// Command stream runs a real two-process stream and says what happened:
//
//	go run ./examples/stream
//
// It starts a producer and a consumer as two child processes (this program
// run again with -role), on a topic in a fresh temporary root path and shm
// path that it removes at the end. The producer pushes -n events, each a
// JSON metadata part {"seq":i} and a data part that carries i again; the
// consumer checks that every one arrives exactly once, in order and intact,
// and prints the rates. The exit status is 0 only if all of that held.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // registers the "shm" driver
)

const topicName = "stream"

// One partition keeps the stream in order; "none" keeps events in the ring
// only (lost with /dev/shm), the fastest level; try "async" or "sync".
const topicOptions = `{"num_partitions":1,"ring_size":"16MiB","durability":"none"}`

func main() {
	role := flag.String("role", "", "internal: producer or consumer (the child processes)")
	root := flag.String("root", "", "internal: root path of the children")
	shm := flag.String("shm", "", "internal: shm path of the children")
	n := flag.Int("n", 200_000, "number of events")
	size := flag.Int("size", 256, "bytes of data per event (at least 8)")
	flag.Parse()
	log.SetFlags(0)
	var err error
	switch *role {
	case "":
		err = parent(*n, *size)
	case "producer":
		err = produce(*root, *shm, *n, *size)
	case "consumer":
		err = consume(*root, *shm, *n)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		log.Fatalf("stream %s: %v", *role, err)
	}
}

// parent starts the consumer and the producer processes and waits for both.
func parent(n, size int) error {
	if size < 8 {
		return fmt.Errorf("-size %d: want at least 8 bytes", size)
	}
	root, err := os.MkdirTemp("", "diaspora-stream-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	shm, err := os.MkdirTemp("/dev/shm", "diaspora-stream-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(shm)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := func(role string) *exec.Cmd {
		cmd := exec.Command(self, "-role", role, "-root", root, "-shm", shm,
			"-n", fmt.Sprint(n), "-size", fmt.Sprint(size))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd
	}
	fmt.Printf("stream: %d events of %d bytes, producer process → consumer process, through %s\n", n, size, shm)
	start := time.Now()
	// Both children create the topic if it does not exist; one of them
	// gets ErrTopicExists, which is fine.
	cons, prod := child("consumer"), child("producer")
	if err := cons.Start(); err != nil {
		return err
	}
	if err := prod.Start(); err != nil {
		cons.Process.Kill()
		cons.Wait()
		return err
	}
	perr := prod.Wait()
	if perr != nil {
		cons.Process.Kill() // it would wait for events that never come
	}
	cerr := cons.Wait()
	if err := errors.Join(perr, cerr); err != nil {
		return fmt.Errorf("a child failed: %w", err)
	}
	elapsed := time.Since(start)
	fmt.Printf("stream: OK: all %d events arrived once, in order, intact; %v end to end (%.0f events/s, processes started included)\n",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}

// openTopic opens the driver and the topic, creating the topic unless it
// exists (another process may create it first: ErrTopicExists is fine).
func openTopic(root, shm string) (diaspora.Driver, diaspora.TopicHandle, error) {
	opts, err := diaspora.MetadataOf(map[string]string{"root_path": root, "shm_path": shm})
	if err != nil {
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	err = d.CreateTopic(topicName, diaspora.MustMetadata(topicOptions))
	if err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
		d.Close()
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	topic, err := d.OpenTopic(topicName)
	if err != nil {
		d.Close()
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	return d, topic, nil
}

func produce(root, shm string, n, size int) (err error) {
	d, topic, err := openTopic(root, shm)
	if err != nil {
		return err
	}
	defer closeAll(&err, d.Close)
	p, err := topic.Producer("stream-producer")
	if err != nil {
		return err
	}
	defer closeAll(&err, p.Close)

	start := time.Now()
	// Futures are checked a window at a time; the producer may read an
	// event's data until its future completes, so each slot of the window
	// has its own buffer.
	const window = 1024
	pending := make([]diaspora.Future[diaspora.EventID], 0, window)
	bufs := make([][]byte, window)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	for seq := range n {
		data := bufs[len(pending)]
		binary.LittleEndian.PutUint64(data, uint64(seq))
		md := diaspora.MustMetadata(fmt.Sprintf(`{"seq":%d}`, seq))
		pending = append(pending, p.Push(md, diaspora.DataView{data}))
		if len(pending) == window || seq == n-1 {
			for _, f := range pending {
				if _, err := f.Wait(30 * time.Second); err != nil {
					return fmt.Errorf("push: %w", err)
				}
			}
			pending = pending[:0]
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("producer (pid %d): pushed %d events in %v (%.0f events/s)\n",
		os.Getpid(), n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}

func consume(root, shm string, n int) (err error) {
	d, topic, err := openTopic(root, shm)
	if err != nil {
		return err
	}
	defer closeAll(&err, d.Close)
	// A copying consumer (BytesAllocator): ev.Data() is ours to keep. An
	// acknowledgement is a store into a mapped position file, made durable
	// in the background: cheap, but we still do it every 1000 events.
	c, err := topic.Consumer("stream-consumer", diaspora.FullDataSelector, diaspora.BytesAllocator)
	if err != nil {
		return err
	}
	defer closeAll(&err, c.Close)

	var start time.Time
	next := 0
	// Events(timeout) ends after timeout without an event.
	for ev, err := range c.Events(10 * time.Second) {
		if err != nil {
			return err
		}
		if next == 0 {
			start = time.Now()
		}
		var md struct{ Seq *int }
		if err := ev.Metadata().Decode(&md); err != nil {
			return err
		}
		switch data := ev.Data().Bytes(); {
		case md.Seq == nil:
			return fmt.Errorf("event %d has no seq: %s", ev.ID(), ev.Metadata())
		case *md.Seq != next:
			return fmt.Errorf("event %d: got seq %d, want %d", ev.ID(), *md.Seq, next)
		case len(data) < 8 || binary.LittleEndian.Uint64(data) != uint64(next):
			return fmt.Errorf("event %d (seq %d): its data does not carry its seq", ev.ID(), next)
		}
		next++
		if next%1000 == 0 || next == n {
			if err := ev.Acknowledge(); err != nil {
				return err
			}
		}
		if next == n {
			break
		}
	}
	if next < n {
		return fmt.Errorf("got %d of %d events, then 10s without one", next, n)
	}
	elapsed := time.Since(start)
	// Nothing more may come: each event arrived once.
	if ev, err := c.Pull().Wait(200 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
		return fmt.Errorf("after the last event: got event %d (%v), want nothing", ev.ID(), err)
	}
	fmt.Printf("consumer (pid %d): received %d events in order, each once, in %v (%.0f events/s)\n",
		os.Getpid(), n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}

// closeAll runs a deferred Close and keeps its error when there was none.
func closeAll(err *error, close func() error) {
	if cerr := close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
