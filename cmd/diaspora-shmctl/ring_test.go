package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora/driver"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

func TestPlanCleanDecidesPerRing(t *testing.T) {
	dir := t.TempDir()
	self := shm.Self()
	dead := shm.Process{PID: self.PID, Start: self.Start + 1}
	info := &driver.RingInfo{Root: "/r", Topic: "t", TopicID: "0123456789abcdef"}
	old := time.Now().Add(-time.Hour)
	orphan := filepath.Join(dir, "dshm.x.y.0")
	os.WriteFile(orphan, nil, 0o600)
	os.Chtimes(orphan, old, old)
	fresh := filepath.Join(dir, "dshm.x.y.1")
	os.WriteFile(fresh, nil, 0o600)
	stats := func(tail, archived uint64, durable bool, readers ...shm.Process) *ring.Stats {
		st := &ring.Stats{TailPos: tail, ArchivedPos: archived, Durable: durable}
		for i, p := range readers {
			st.Slots = append(st.Slots, ring.SlotInfo{Index: i, Name: "r", Process: p, Alive: p.Alive()})
		}
		return st
	}
	rings := []driver.RingFile{
		{Name: "unused-archived", Info: info, Stats: stats(100, 100, true, dead)},
		{Name: "unused-unarchived", Info: info, Stats: stats(100, 40, true)},
		{Name: "in-use", Info: info, Stats: stats(100, 100, true, self)},
		{Name: "root-gone", Info: info, RootGone: true, Stats: stats(100, 40, true, self)},
		{Name: "not-durable", Info: info, Stats: stats(100, 0, false)},
		{Name: "root-unknown", Info: info, RootErr: "open topic \"t\": permission denied", Stats: stats(100, 0, false)},
		{Name: "root-unknown-durable", Info: info, RootErr: "topic.json is damaged", Stats: stats(100, 100, true, dead)},
		{Name: "not-durable-empty", Info: info, Stats: stats(0, 0, false)},
		{Name: "damaged", Info: info, Err: "bad magic"},
		{Name: "orphan", Path: orphan},
		{Name: "fresh-orphan", Path: fresh},
	}
	want := map[string]struct {
		action  string
		archive bool
		reason  string
	}{
		"unused-archived":      {"remove", false, "log holds all"},
		"unused-unarchived":    {"remove", true, "archives 60B"},
		"in-use":               {"skip", false, "in use by pid"},
		"root-gone":            {"remove", false, "nothing to archive to"},
		"not-durable":          {"skip", false, "not durable"},
		"root-unknown":         {"skip", false, "cannot tell whether root /r still holds this topic (open topic \"t\": permission denied)"},
		"root-unknown-durable": {"skip", false, "cannot tell whether root /r"},
		"not-durable-empty":    {"remove", false, "no live process"},
		"damaged":              {"skip", false, "cannot be opened"},
		"orphan":               {"skip", false, "nothing proves it is orphaned"},
		"fresh-orphan":         {"skip", false, "being created"},
	}
	for _, c := range planClean(rings, false, time.Now()) {
		w := want[c.Ring]
		if c.Action != w.action || c.Archive != w.archive || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("%s: got %s archive=%v %q, want %s archive=%v and a reason with %q",
				c.Ring, c.Action, c.Archive, c.Reason, w.action, w.archive, w.reason)
		}
	}
	for _, c := range planClean(rings, true, time.Now()) {
		if (c.Ring == "damaged" || c.Ring == "not-durable" || c.Ring == "fresh-orphan" || c.Ring == "orphan") && c.Action != "remove" {
			t.Errorf("%s with --force: got %s (%s), want remove", c.Ring, c.Action, c.Reason)
		}
		// Not knowing whether the root holds the topic is no licence to drop
		// what may be the only copy of its events.
		if strings.HasPrefix(c.Ring, "root-unknown") && c.Action != "skip" {
			t.Errorf("%s with --force: got %s (%s), want skip", c.Ring, c.Action, c.Reason)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 64 << 20: "64MiB", 3 << 30: "3GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
