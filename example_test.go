package diaspora_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // registers "shm"
)

// Creating a topic and a producer, then pushing events, with the
// shared-memory driver. A program keeps its root_path (the topics, their
// logs and the consumer positions) somewhere durable; the examples use
// temporary directories, removed at the end.
func Example_producer() {
	root, _ := os.MkdirTemp("", "diaspora-example-")
	shm, _ := os.MkdirTemp("/dev/shm", "diaspora-example-") // where the rings go; /dev/shm by default
	defer os.RemoveAll(root)
	defer os.RemoveAll(shm)

	opts, _ := diaspora.MetadataOf(map[string]string{"root_path": root, "shm_path": shm})
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	// Another process may create the topic first: ErrTopicExists is fine.
	err = d.CreateTopic("sim", diaspora.MustMetadata(`{"num_partitions":1,"ring_size":"1MiB"}`))
	if err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
		fmt.Println(err)
		return
	}
	topic, err := d.OpenTopic("sim")
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := topic.Producer("writer", diaspora.BatchSize(64), diaspora.Loose)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for i := range 3 {
		md, _ := diaspora.MetadataOf(map[string]int{"step": i})
		id, err := p.Push(md, diaspora.DataView{[]byte("payload")}).Wait(time.Second)
		fmt.Println("pushed event", id, err)
	}
	_, err = p.Flush().Wait(-1)
	fmt.Println("flushed:", err)
	// Output:
	// pushed event 0 <nil>
	// pushed event 1 <nil>
	// pushed event 2 <nil>
	// flushed: <nil>
}

// Consuming events with a range loop over Consumer.Events, selecting all the
// data of each event and copying it (BytesAllocator). Events(timeout) ends
// after timeout without an event.
func Example_consumer() {
	root, _ := os.MkdirTemp("", "diaspora-example-")
	shm, _ := os.MkdirTemp("/dev/shm", "diaspora-example-")
	defer os.RemoveAll(root)
	defer os.RemoveAll(shm)
	opts, _ := diaspora.MetadataOf(map[string]string{"root_path": root, "shm_path": shm})
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	if err := d.CreateTopic("sim", diaspora.MustMetadata(`{"ring_size":"1MiB"}`)); err != nil {
		fmt.Println(err)
		return
	}
	topic, _ := d.OpenTopic("sim")
	p, _ := topic.Producer("writer")
	for i := range 3 {
		md, _ := diaspora.MetadataOf(map[string]int{"step": i})
		p.Push(md, diaspora.DataView{[]byte(fmt.Sprint("data ", i))})
	}
	if err := p.Close(); err != nil { // Close flushes
		fmt.Println(err)
		return
	}

	// {"ack_sync":false}: Acknowledge writes the position without fsync.
	c, err := topic.Consumer("reader", diaspora.FullDataSelector, diaspora.BytesAllocator,
		diaspora.MustMetadata(`{"ack_sync":false}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for ev, err := range c.Events(100 * time.Millisecond) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ev.ID(), ev.Metadata(), string(ev.Data().Bytes()))
		if err := ev.Acknowledge(); err != nil { // "reader" resumes after ev
			fmt.Println(err)
			return
		}
	}
	// Output:
	// 0 {"step":0} data 0
	// 1 {"step":1} data 1
	// 2 {"step":2} data 2
}

// Zero-copy: a producer claims space in the ring and writes a frame in
// place; a consumer with a DataSelector and no DataAllocator gets Data()
// views into the shared memory, valid until it acknowledges the event.
func ExampleProducer_Claim() {
	root, _ := os.MkdirTemp("", "diaspora-example-")
	shm, _ := os.MkdirTemp("/dev/shm", "diaspora-example-")
	defer os.RemoveAll(root)
	defer os.RemoveAll(shm)
	opts, _ := diaspora.MetadataOf(map[string]string{"root_path": root, "shm_path": shm})
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	if err := d.CreateTopic("frames", diaspora.MustMetadata(`{"ring_size":"8MiB","durability":"none"}`)); err != nil {
		fmt.Println(err)
		return
	}
	topic, _ := d.OpenTopic("frames")
	p, _ := topic.Producer("camera")
	defer p.Close()
	claim, err := p.Claim(diaspora.MustMetadata(`{"frame":0}`), 1<<20)
	if err != nil {
		fmt.Println(err)
		return
	}
	frame := claim.Bytes() // 1 MiB of the ring
	for i := range frame {
		frame[i] = byte(i)
	}
	id, err := claim.Commit().Wait(time.Second)
	fmt.Println("committed", id, err)

	c, _ := topic.Consumer("viewer", diaspora.FullDataSelector, diaspora.MustMetadata(`{"ack_sync":false}`))
	defer c.Close()
	ev, err := c.Pull().Wait(time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	view := ev.Data() // in the ring: no copy
	last := make([]byte, 1)
	view.Read(last, view.Size()-1)
	fmt.Println(ev.Metadata(), view.Size(), last[0])
	fmt.Println(ev.Acknowledge()) // view is invalid from here on
	// Output:
	// committed 0 <nil>
	// {"frame":0} 1048576 255
	// <nil>
}

// Processing events until a processor asks to stop.
func ExampleConsumer_Process() {
	root, _ := os.MkdirTemp("", "diaspora-example-")
	shm, _ := os.MkdirTemp("/dev/shm", "diaspora-example-")
	defer os.RemoveAll(root)
	defer os.RemoveAll(shm)
	opts, _ := diaspora.MetadataOf(map[string]string{"root_path": root, "shm_path": shm})
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	if err := d.CreateTopic("sim", diaspora.MustMetadata(`{"ring_size":"1MiB"}`)); err != nil {
		fmt.Println(err)
		return
	}
	topic, _ := d.OpenTopic("sim")
	p, _ := topic.Producer("writer")
	for i := range 10 {
		p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"step":%d}`, i)), nil)
	}
	p.Close()
	c, _ := topic.Consumer("reader")
	defer c.Close()
	// The driver's default pool runs the processor inline, one event at a
	// time; a pool of MakeThreadPool(n) would run n at once.
	err = c.Process(func(ev diaspora.Event) error {
		fmt.Println("event", ev.ID(), ev.Metadata())
		if ev.ID() == 2 {
			return diaspora.ErrStopProcessing
		}
		return nil
	}, time.Second, diaspora.InfiniteEvents, d.DefaultThreadPool())
	fmt.Println("done:", err)
	// Output:
	// event 0 {"step":0}
	// event 1 {"step":1}
	// event 2 {"step":2}
	// done: <nil>
}

// Selecting a rectangle of an image: a sub-view of the rows, then a strided
// view of the columns inside it.
func ExampleDataDescriptor_StridedView() {
	const width, height = 8, 6
	image := diaspora.NewDataDescriptor("image", width*height)
	x, y, w, h := 2, 1, 3, 2
	rows, _ := image.SubView(y*width+x, width*h)
	rect, _ := rows.StridedView(0, h, w, width-w)
	fmt.Println(rect.Size(), rect.Flatten())
	// Output:
	// 6 [{10 3} {18 3}]
}

// Metadata is JSON kept as compact text.
func ExampleNewMetadata() {
	md, err := diaspora.NewMetadata(`{ "x": 1, "y": [2, 3] }`)
	fmt.Println(md.Dump(), err, md.IsObject())
	var v struct{ X int }
	md.Decode(&v)
	fmt.Println(v.X)
	// Output:
	// {"x":1,"y":[2,3]} <nil> true
	// 1
}

// A schema validator rejects events whose metadata does not conform.
func ExampleValidatorFromMetadata() {
	v, _ := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(
		`{"type":"schema","schema":{"type":"object","required":["step"]}}`))
	fmt.Println(v.Validate(diaspora.MustMetadata(`{"step":1}`), nil))
	fmt.Println(v.Validate(diaspora.MustMetadata(`{"other":1}`), nil) != nil)
	// Output:
	// <nil>
	// true
}
