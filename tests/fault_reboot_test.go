package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// TestFaultRebootNeverReusesIDs: DESIGN.md promises that event IDs "never
// repeat, across restarts and reboots". Events a consumer received (without
// acknowledging them) that were only in the ring when /dev/shm was lost must
// not have their IDs handed to new events.
func TestFaultRebootNeverReusesIDs(t *testing.T) {
	// Under async the same happens to events committed but not yet archived
	// when every process dies (the chaos test counts them); none shows it
	// every time.
	for _, dur := range []string{"none"} {
		t.Run(dur, func(t *testing.T) {
			env := newFaultEnv(t)
			env.createTopic(t, "ids", fmt.Sprintf(`{"ring_size":"64KiB","durability":%q}`, dur))
			d := env.driver(t)
			th, err := d.OpenTopic("ids")
			if err != nil {
				t.Fatal(err)
			}
			c, err := th.Consumer("seen", diaspora.FullDataSelector, diaspora.BytesAllocator)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := th.Producer("p")
			for i := 0; i < 10; i++ {
				if _, err := p.Push(payloadMeta("before", 0, i), diaspora.DataView{payload("before", 0, i)}).Wait(5 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			var seen []diaspora.EventID
			for i := 0; i < 10; i++ {
				ev, err := c.Pull().Wait(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, ev.ID())
			}
			d.Close()
			env.reboot(t)
			d2 := env.driver(t)
			defer d2.Close()
			th2, err := d2.OpenTopic("ids")
			if err != nil {
				t.Fatal(err)
			}
			p2, _ := th2.Producer("p")
			id, err := p2.Push(payloadMeta("after", 0, 0), diaspora.DataView{payload("after", 0, 0)}).Wait(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range seen {
				if s == id {
					t.Fatalf("after the rings were lost, a new event got ID %d, which consumer \"seen\" already received for another event (IDs seen: %v)", id, seen)
				}
			}
		})
	}
}
