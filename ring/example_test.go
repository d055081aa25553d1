package ring_test

import (
	"fmt"
	"os"
	"time"

	"github.com/diaspora-shm/diaspora/ring"
)

func Example() {
	dir, _ := os.MkdirTemp("", "ring-example")
	defer os.RemoveAll(dir)
	r, err := ring.Create(dir, "events", ring.Options{Capacity: 1 << 20})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	rd, _ := r.Attach("printer") // before producing: readers pin what they have not read
	defer rd.Close()

	var c ring.Claim // reusable
	if err := r.Claim(&c, []ring.RecordSize{{Meta: 4, Data: 5}}, time.Second); err != nil {
		panic(err)
	}
	copy(c.Meta(0), "meta")
	copy(c.Data(0), "hello")
	if err := c.Commit(); err != nil {
		panic(err)
	}

	e, err := rd.Next(time.Second) // e.Meta and e.Data point into the ring
	if err != nil {
		panic(err)
	}
	fmt.Println(e.ID, string(e.Meta), string(e.Data))
	rd.Release(e.End) // the space may now be reused
	// Output: 0 meta hello
}
