package driver_test

import (
	"fmt"
	"os"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver"
)

// A producer and a zero-copy consumer on a durable topic. In real use they
// live in different processes that open the same root_path.
func Example() {
	root, _ := os.MkdirTemp("", "diaspora-example-")
	shmDir, _ := os.MkdirTemp("/dev/shm", "diaspora-example-")
	defer os.RemoveAll(root)
	defer os.RemoveAll(shmDir)

	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(fmt.Sprintf(`{"root_path":%q,"shm_path":%q}`, root, shmDir)))
	if err != nil {
		panic(err)
	}
	defer d.Close()
	if err := d.CreateTopic("frames", diaspora.MustMetadata(`{"ring_size":"1MiB","durability":"sync"}`)); err != nil {
		panic(err)
	}
	topic, _ := d.OpenTopic("frames")

	p, _ := topic.Producer("simulation")
	for step := 0; step < 3; step++ {
		md := diaspora.MustMetadata(fmt.Sprintf(`{"step":%d}`, step))
		// Under "sync" the future completes once the event is fsynced.
		if _, err := p.Push(md, diaspora.DataView{[]byte("pixels")}).Wait(5 * time.Second); err != nil {
			panic(err)
		}
	}

	// A selector and no allocator: Data() points into the ring until the
	// event is acknowledged.
	c, _ := topic.Consumer("analysis", diaspora.FullDataSelector)
	for ev, err := range c.Events(100 * time.Millisecond) {
		if err != nil {
			break
		}
		fmt.Println(ev.ID(), ev.Metadata().Dump(), string(ev.Data().Bytes()))
		ev.Acknowledge()
	}
	// Output:
	// 0 {"step":0} pixels
	// 1 {"step":1} pixels
	// 2 {"step":2} pixels
}
