package diaspora_test

import (
	"fmt"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// Creating a topic and a producer, then pushing events. The examples use the
// in-memory test driver registered as "memtest"; a program would import
// github.com/diaspora-shm/diaspora/driver and use "shm".
func Example_producer() {
	d, err := diaspora.NewDriver("memtest", diaspora.Metadata{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	if err := d.CreateTopic("sim", diaspora.MustMetadata(`{"num_partitions":1}`)); err != nil {
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
// data of each event.
func Example_consumer() {
	d, _ := diaspora.NewDriver("memtest", diaspora.Metadata{})
	defer d.Close()
	d.CreateTopic("sim")
	topic, _ := d.OpenTopic("sim")
	p, _ := topic.Producer("writer")
	for i := range 3 {
		md, _ := diaspora.MetadataOf(map[string]int{"step": i})
		p.Push(md, diaspora.DataView{[]byte(fmt.Sprint("data ", i))})
	}
	p.Close()

	c, err := topic.Consumer("reader", diaspora.FullDataSelector, diaspora.BytesAllocator)
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
		ev.Acknowledge()
	}
	// Output:
	// 0 {"step":0} data 0
	// 1 {"step":1} data 1
	// 2 {"step":2} data 2
}

// Processing events on a thread pool until a processor asks to stop.
func ExampleConsumer_Process() {
	d, _ := diaspora.NewDriver("memtest", diaspora.Metadata{})
	defer d.Close()
	d.CreateTopic("sim")
	topic, _ := d.OpenTopic("sim")
	p, _ := topic.Producer("writer")
	for i := range 10 {
		p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"step":%d}`, i)), nil)
	}
	c, _ := topic.Consumer("reader")
	err := c.Process(func(ev diaspora.Event) error {
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
