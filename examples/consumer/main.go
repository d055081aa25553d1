// Command consumer reads the events the producer example pushes, checks
// that they arrive in order and intact, and acknowledges them. Run it beside
// the producer, in another terminal, before or after it:
//
//	go run ./examples/producer -n 100000
//	go run ./examples/consumer
//
// It stops when no event has come for -idle (Events(timeout) ends after
// timeout of silence), or after -n events. The consumer name resumes where
// it last acknowledged: run it again and it gets only the events pushed
// since.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // registers the "shm" driver
)

// topicOptions are used when this process creates the topic (it may start
// first); they must match the producer's.
const topicOptions = `{"num_partitions":1,"ring_size":"16MiB","durability":"async"}`

// ackEvery is how often the consumer acknowledges. An acknowledgement
// stores the consumer's position after that event, covering every earlier
// event of its partition: a store into a mapped file, which survives the
// death of any process at once and is made durable in the background
// within the consumer's ack_interval (100 ms); so acknowledging every event
// costs little, and acknowledging every N is as safe, up to N events read
// again after a crash. The consumer option {"ack_sync":true} waits for the
// position to be durable before Acknowledge returns.
const ackEvery = 1000

func main() {
	root := flag.String("root", defaultRoot(), "root path of the driver (topics, logs, consumer positions)")
	shm := flag.String("shm", "", "where the rings go (default /dev/shm)")
	topicName := flag.String("topic", "example", "topic name; created if it does not exist")
	name := flag.String("name", "example-consumer", "consumer name: it resumes after its last acknowledged event")
	n := flag.Int("n", 0, "stop after this many events (0: when the stream goes quiet)")
	idle := flag.Duration("idle", 2*time.Second, "stop when no event comes for this long")
	flag.Parse()
	if err := run(*root, *shm, *topicName, *name, *n, *idle); err != nil {
		log.Fatal("consumer: ", err)
	}
}

// defaultRoot is $DIASPORA_ROOT, else diaspora-examples in the temp dir.
func defaultRoot() string {
	if r := os.Getenv("DIASPORA_ROOT"); r != "" {
		return r
	}
	return filepath.Join(os.TempDir(), "diaspora-examples")
}

func run(root, shm, topicName, name string, n int, idle time.Duration) (err error) {
	options := map[string]string{"root_path": root}
	if shm != "" {
		options["shm_path"] = shm // else /dev/shm
	}
	opts, err := diaspora.MetadataOf(options)
	if err != nil {
		return err
	}
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		return err
	}
	defer closeAll(&err, d.Close)
	err = d.CreateTopic(topicName, diaspora.MustMetadata(topicOptions))
	if err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
		return err
	}
	topic, err := d.OpenTopic(topicName)
	if err != nil {
		return err
	}
	// FullDataSelector asks for all of each event's data, BytesAllocator
	// copies it into memory of our own: ev.Data() stays valid after the
	// event is acknowledged. (Without an allocator it would point into the
	// ring: see the zerocopy example.)
	c, err := topic.Consumer(name, diaspora.FullDataSelector, diaspora.BytesAllocator)
	if err != nil {
		return err
	}
	defer closeAll(&err, c.Close)

	var (
		count, outOfOrder int
		next              = -1 // the seq expected next; -1 until the first event
		last              diaspora.Event
		start, end        time.Time
	)
	for ev, err := range c.Events(idle) {
		if err != nil {
			return err
		}
		if count == 0 {
			start = time.Now()
		}
		var md struct{ Seq int }
		if err := ev.Metadata().Decode(&md); err != nil {
			return err
		}
		data := ev.Data().Bytes()
		if len(data) < 8 || binary.LittleEndian.Uint64(data) != uint64(md.Seq) {
			return fmt.Errorf("event %d: data does not carry seq %d", ev.ID(), md.Seq)
		}
		// A new run of the producer starts again at seq 0.
		if next >= 0 && md.Seq != next && md.Seq != 0 {
			outOfOrder++
		}
		next = md.Seq + 1
		count++
		last, end = ev, time.Now()
		if count%ackEvery == 0 {
			if err := ev.Acknowledge(); err != nil {
				return err
			}
		}
		if count == n {
			break
		}
	}
	if count == 0 {
		fmt.Printf("consumer: no new event in topic %q for %v\n", topicName, idle)
		return nil
	}
	// Acknowledge the last event too, so the next run starts after it.
	if err := last.Acknowledge(); err != nil {
		return err
	}
	elapsed := end.Sub(start)
	fmt.Printf("consumer: received %d events from topic %q in %v (%.0f events/s), %d out of order\n",
		count, topicName, elapsed.Round(time.Millisecond), float64(count)/elapsed.Seconds(), outOfOrder)
	if outOfOrder > 0 {
		return errors.New("events arrived out of order")
	}
	return nil
}

// closeAll runs a deferred Close and keeps its error when there was none.
func closeAll(err *error, close func() error) {
	if cerr := close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
