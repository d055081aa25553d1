// Command producer pushes events, each a small JSON metadata part and a data
// part, into a topic of the shm driver. Run it beside the consumer example,
// in another terminal or at the same time:
//
//	go run ./examples/producer -n 100000
//	go run ./examples/consumer
//
// Both use the same root path: $DIASPORA_ROOT when set, else
// diaspora-examples under the system temp dir; -root overrides it. The topic
// is created by whichever process comes first.
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

// topicOptions are used when this process creates the topic. One partition
// keeps the whole stream in order; "async" archives events to the log on
// disk in the background.
const topicOptions = `{"num_partitions":1,"ring_size":"16MiB","durability":"async"}`

func main() {
	root := flag.String("root", defaultRoot(), "root path of the driver (topics, logs, consumer positions)")
	shm := flag.String("shm", "", "where the rings go (default /dev/shm)")
	topicName := flag.String("topic", "example", "topic name; created if it does not exist")
	n := flag.Int("n", 100_000, "number of events to push")
	size := flag.Int("size", 256, "bytes of data per event (at least 8)")
	flag.Parse()
	if err := run(*root, *shm, *topicName, *n, *size); err != nil {
		log.Fatal("producer: ", err)
	}
}

// defaultRoot is $DIASPORA_ROOT, else diaspora-examples in the temp dir.
func defaultRoot() string {
	if r := os.Getenv("DIASPORA_ROOT"); r != "" {
		return r
	}
	return filepath.Join(os.TempDir(), "diaspora-examples")
}

func run(root, shm, topicName string, n, size int) (err error) {
	if size < 8 {
		return fmt.Errorf("-size %d: want at least 8 bytes", size)
	}
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

	// Create the topic unless it exists. Another process may create it
	// between our check and our create: ErrTopicExists is fine.
	err = d.CreateTopic(topicName, diaspora.MustMetadata(topicOptions))
	if err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
		return err
	}
	topic, err := d.OpenTopic(topicName)
	if err != nil {
		return err
	}
	p, err := topic.Producer("example-producer")
	if err != nil {
		return err
	}
	defer closeAll(&err, p.Close) // Close flushes what is still queued

	start := time.Now()
	// A push returns at once with a future; waiting on each one in turn
	// would leave the producer idle, so keep a window of them and check them
	// all when it is full. The producer may read an event's data until its
	// future completes, so each slot of the window has its own buffer,
	// rewritten only after the window was waited on.
	const window = 1024
	pending := make([]diaspora.Future[diaspora.EventID], 0, window)
	bufs := make([][]byte, window)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	for seq := range n {
		md, err := diaspora.MetadataOf(map[string]any{"seq": seq, "source": "producer example"})
		if err != nil {
			return err
		}
		data := bufs[len(pending)]
		binary.LittleEndian.PutUint64(data, uint64(seq)) // the consumer checks this
		pending = append(pending, p.Push(md, diaspora.DataView{data}))
		if len(pending) == window {
			if err := waitAll(pending); err != nil {
				return err
			}
			pending = pending[:0]
		}
	}
	if err := waitAll(pending); err != nil {
		return err
	}
	if _, err := p.Flush().Wait(-1); err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("producer: pushed %d events of %d bytes to topic %q in %v (%.0f events/s)\n",
		n, size, topicName, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}

// waitAll waits for every future and returns the first error.
func waitAll(fs []diaspora.Future[diaspora.EventID]) error {
	for _, f := range fs {
		if _, err := f.Wait(30 * time.Second); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	return nil
}

// closeAll runs a deferred Close and keeps its error when there was none.
func closeAll(err *error, close func() error) {
	if cerr := close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
