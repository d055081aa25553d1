package tests

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// lastField returns field i of the last line starting with prefix.
func (c *collected) lastField(prefix string, i int) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := len(c.lines) - 1; k >= 0; k-- {
		if f := strings.Fields(c.lines[k]); len(f) > i && f[0] == prefix {
			v, err := strconv.ParseUint(f[i], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// An acknowledged position (default options: a store into the mapped
// position file) survives the SIGKILL of its consumer process at once, and
// the loss of /dev/shm: the name resumes after the last event whose
// Acknowledge returned, and never after one it did not acknowledge.
func TestAcknowledgedPositionSurvivesKillAndLostShm(t *testing.T) {
	for _, opts := range []string{`{}`, `{"ack_sync":true}`} {
		t.Run(opts, func(t *testing.T) {
			env := newFaultEnv(t)
			env.createTopic(t, "t", `{"ring_size":"1MiB","durability":"async"}`)
			d := env.driver(t)
			th, _ := d.OpenTopic("t")
			p, _ := th.Producer("p")
			for i := 0; i < 3000; i++ {
				p.Push(payloadMeta("p", 0, i), diaspora.DataView{payload("p", 0, i)})
			}
			if _, err := p.Flush().Wait(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			d.Close() // archives everything
			var cons collected
			cp := spawn(t, "consumer", "ana", 0, []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=t",
				"DSHM_ACK_EVERY=1", "DSHM_CONSUMER_OPTS=" + opts}, nil, cons.add)
			waitFor(t, 20*time.Second, "the consumer acknowledges", func() bool { return cons.count("acked ") > 500 })
			cp.kill()
			acked, ok := cons.lastField("acked", 2)
			got, _ := cons.lastField("got", 2)
			if !ok {
				t.Fatal("no acknowledgement reported")
			}
			env.reboot(t) // /dev/shm lost: the rings, not the positions in the root
			d = env.driver(t)
			defer d.Close()
			th, _ = d.OpenTopic("t")
			c, err := th.Consumer("ana")
			if err != nil {
				t.Fatal(err)
			}
			ev, err := c.Pull().Wait(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("killed after acknowledging %d (and receiving %d); resumed at %d", acked, got, ev.ID())
			if ev.ID() <= acked {
				t.Fatalf("resumed at %d, at or before %d, whose Acknowledge had returned", ev.ID(), acked)
			}
			if ev.ID() > got+1 {
				t.Fatalf("resumed at %d, past %d, the last event received", ev.ID(), got)
			}
		})
	}
}
