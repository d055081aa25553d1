package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// TestFaultBadInputThroughAPI feeds the public API what a careless or
// hostile caller would: each must be an error that says what was wrong,
// never a panic, a hang or a file outside the root.
func TestFaultBadInputThroughAPI(t *testing.T) {
	env := newFaultEnv(t)
	d := env.driver(t)
	defer d.Close()
	mustFail := func(what string, err error, target error, says string) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s: no error", what)
		case target != nil && !errors.Is(err, target):
			t.Errorf("%s: %v does not wrap %v", what, err, target)
		case says != "" && !strings.Contains(err.Error(), says):
			t.Errorf("%s: error %q does not mention %q", what, err, says)
		}
	}
	for _, text := range []string{`{"root_path":`, `{"a":1,}`, "", `{"x":"\xff"`, strings.Repeat("[", 100000)} {
		_, err := diaspora.NewMetadata(text)
		mustFail("NewMetadata("+text[:min(20, len(text))]+")", err, diaspora.ErrInvalidJSON, "")
	}
	_, err := diaspora.NewDriver("shm", diaspora.MustMetadata(`{"root_path":"/tmp/x","bogus":1}`))
	mustFail("unknown driver option", err, diaspora.ErrInvalidArgument, "bogus")
	_, err = diaspora.NewDriver("shm", diaspora.MustMetadata(`{"shm_path":"/nonexistent/dir"}`))
	mustFail("missing shm_path", err, nil, "/nonexistent/dir")

	for _, name := range []string{"a/b", "..", "../escape", ".hidden", "nul\x00byte", strings.Repeat("n", 10000), "", "tab\tname"} {
		err := d.CreateTopic(name, diaspora.MustMetadata(`{}`))
		mustFail("topic name "+strings.ToValidUTF8(name[:min(len(name), 12)], "?"), err, diaspora.ErrInvalidArgument, "")
		_, err = d.OpenTopic(name)
		mustFail("open topic name", err, nil, "")
	}
	for _, opts := range []string{`{"bogus":1}`, `{"num_partitions":0}`, `{"num_partitions":-1}`, `{"ring_size":-1}`,
		`{"ring_size":"1KiB"}`, `{"ring_size":"lots"}`, `{"durability":"maybe"}`, `{"push_timeout":"-5s"}`, `{"mode":"0777"}`, `[]`} {
		mustFail("topic options "+opts, d.CreateTopic("opts", diaspora.MustMetadata(opts)), diaspora.ErrInvalidArgument, "")
	}
	if err := d.CreateTopic("api", diaspora.MustMetadata(`{"ring_size":"64KiB","durability":"sync","push_timeout":"1s"}`)); err != nil {
		t.Fatal(err)
	}
	th, err := d.OpenTopic("api")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a/b", "..", "x\x00y", strings.Repeat("p", 10000)} {
		_, err := th.Producer(name)
		mustFail("producer name", err, diaspora.ErrInvalidArgument, "")
		_, err = th.Consumer(name)
		mustFail("consumer name", err, diaspora.ErrInvalidArgument, "")
	}
	_, err = th.Producer("p", diaspora.MustMetadata(`{"bogus":true}`))
	mustFail("unknown producer option", err, diaspora.ErrInvalidArgument, "bogus")
	_, err = th.Consumer("c", diaspora.MustMetadata(`{"start":"middle"}`))
	mustFail("bad consumer option", err, diaspora.ErrInvalidArgument, "start")
	_, err = th.Consumer("c", diaspora.Targets{7})
	mustFail("target partition 7 of 1", err, diaspora.ErrInvalidArgument, "7")

	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	// An event larger than the ring: an error, at once, not after a timeout.
	start := time.Now()
	_, err = p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{make([]byte, 100<<10)}).Wait(10 * time.Second)
	mustFail("event larger than the ring", err, nil, "")
	if time.Since(start) > 3*time.Second {
		t.Errorf("an event larger than the ring took %v to be refused", time.Since(start))
	}
	_, err = p.Claim(diaspora.MustMetadata(`{}`), -1)
	mustFail("Claim(-1)", err, diaspora.ErrInvalidArgument, "-1")
	_, err = p.Claim(diaspora.MustMetadata(`{}`), 1<<20)
	mustFail("Claim larger than the ring", err, diaspora.ErrInvalidArgument, "")
	c0, err := p.Claim(diaspora.MustMetadata(`{"zero":1}`), 0)
	if err != nil {
		t.Fatalf("Claim(0): %v", err)
	}
	if len(c0.Bytes()) != 0 {
		t.Errorf("Claim(0) gave %d bytes", len(c0.Bytes()))
	}
	if _, err := c0.Commit().Wait(5 * time.Second); err != nil {
		t.Errorf("commit of a zero-size claim: %v", err)
	}
	mustFail("commit twice", func() error { _, err := c0.Commit().Wait(time.Second); return err }(), diaspora.ErrInvalidArgument, "")
	mustFail("abort after commit", c0.Abort(), diaspora.ErrInvalidArgument, "")
	ca, err := p.Claim(diaspora.MustMetadata(`{"aborted":1}`), 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Abort(); err != nil {
		t.Errorf("abort: %v", err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"after":1}`), nil).Wait(5 * time.Second); err != nil {
		t.Errorf("push after an aborted claim: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = p.Push(diaspora.MustMetadata(`{}`), nil).Wait(time.Second)
	mustFail("push to a closed producer", err, diaspora.ErrClosed, "")
	_, err = p.Claim(diaspora.MustMetadata(`{}`), 1)
	mustFail("claim on a closed producer", err, diaspora.ErrClosed, "")

	// Acknowledging twice and out of order: a later acknowledgement covers
	// the earlier ones; an earlier one after it does not move back.
	c, err := th.Consumer("acker")
	if err != nil {
		t.Fatal(err)
	}
	var evs []diaspora.Event
	for i := 0; i < 2; i++ {
		ev, err := c.Pull().Wait(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for _, ev := range []diaspora.Event{evs[1], evs[1], evs[0]} {
		if err := ev.Acknowledge(); err != nil {
			t.Errorf("acknowledge event %d: %v", ev.ID(), err)
		}
	}
	c.Close()
	mustFail("acknowledge on a closed consumer", evs[1].Acknowledge(), diaspora.ErrClosed, "")
	_, err = c.Pull().Wait(time.Second)
	mustFail("pull on a closed consumer", err, diaspora.ErrClosed, "")
	c2, err := th.Consumer("acker")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if ev, err := c2.Pull().Wait(2 * time.Second); err == nil && ev.ID() <= evs[1].ID() {
		t.Errorf("after acknowledging %d then %d, the name resumed at %d", evs[1].ID(), evs[0].ID(), ev.ID())
	}
}
