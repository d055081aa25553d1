package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// TestFaultCaughtUpConsumerDoesNotWedgeFullRing: a consumer that attaches to
// a ring whose space has all been used once (start "latest", or a stored
// position at the end) holds nothing it needs, so producers must still make
// progress. It once pinned the whole ring from a stale head and waited for
// an event that could not be written: a wedge until push_timeout, forever.
func TestFaultCaughtUpConsumerDoesNotWedgeFullRing(t *testing.T) {
	for _, dur := range []string{"none", "async", "sync"} {
		for _, how := range []string{"latest", "resumed"} {
			t.Run(dur+"/"+how, func(t *testing.T) {
				env := newFaultEnv(t)
				env.createTopic(t, "wedge", fmt.Sprintf(`{"ring_size":"64KiB","durability":%q,"push_timeout":"2s"}`, dur))
				d := env.driver(t)
				defer d.Close()
				th, err := d.OpenTopic("wedge")
				if err != nil {
					t.Fatal(err)
				}
				p, err := th.Producer("p")
				if err != nil {
					t.Fatal(err)
				}
				// A reader that reads nothing fills the ring, then leaves:
				// the ring's head stays where it pinned it.
				blocker, err := th.Consumer("blocker")
				if err != nil {
					t.Fatal(err)
				}
				quick, err := th.Producer("quick", diaspora.MustMetadata(`{"push_timeout":"200ms"}`))
				if err != nil {
					t.Fatal(err)
				}
				var last diaspora.EventID
				for i := 0; ; i++ {
					id, err := quick.Push(payloadMeta("p", 0, i), diaspora.DataView{make([]byte, 1000)}).Wait(10 * time.Second)
					if err != nil {
						break
					}
					last = id
					if i > 1000 {
						t.Fatal("a reader that reads nothing does not hold space back")
					}
				}
				blocker.Close()
				var c diaspora.Consumer
				if how == "latest" {
					c, err = th.Consumer("late", diaspora.MustMetadata(`{"start":"latest"}`))
				} else {
					// A name that acknowledged the last event, reopened.
					c0, err0 := th.Consumer("resumer")
					if err0 != nil {
						t.Fatal(err0)
					}
					for {
						ev, err := c0.Pull().Wait(5 * time.Second)
						if err != nil {
							t.Fatalf("pull: %v", err)
						}
						if ev.ID() == last {
							if err := ev.Acknowledge(); err != nil {
								t.Fatal(err)
							}
							break
						}
					}
					c0.Close()
					c, err = th.Consumer("resumer")
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				id, err := p.Push(payloadMeta("p", 0, 1000), diaspora.DataView{make([]byte, 1000)}).Wait(10 * time.Second)
				if err != nil {
					t.Fatalf("a consumer that needs nothing of the ring blocks producers: %v", err)
				}
				ev, err := c.Pull().Wait(5 * time.Second)
				if err != nil || ev.ID() != id {
					t.Fatalf("consumer got %v, %v; want event %d", ev.ID(), err, id)
				}
			})
		}
	}
}
