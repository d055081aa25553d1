package tests

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// evKey names an event: its partition and ID.
type evKey struct {
	part int
	id   uint64
}

// content is what an event carries: the push it came from and the CRC of
// its bytes.
type content struct {
	key string // producer/incarnation/seq
	crc uint32
}

// world is the checker: every fact a child or an audit reports goes through
// it, and it records every broken invariant.
type world struct {
	mu         sync.Mutex
	t          testing.TB
	byID       map[evKey]content
	byContent  map[string]evKey
	done       map[evKey]content // pushes whose future completed
	names      map[string]*nameState
	violations []string
	progress   int // done and got lines, to see a wedge

	allowErrors bool // damage is being injected: consumers may see errors
	allowBad    bool // a hostile writer overwrites records: bytes may differ

	// lostInReboot are IDs seen before the rings were deleted that the log
	// does not hold; reusedAfterReboot counts those handed out again
	// (TestFaultRebootNeverReusesIDs fails on it; the chaos test counts it).
	lostInReboot      map[evKey]bool
	reusedAfterReboot int

	pushesDone, pushesFailed, eventsChecked, errorsSeen int
	failSample                                          []string
}

// nameState is what the checker knows of one consumer name.
type nameState struct {
	lastAcked map[int]int64 // acknowledged and reported, -1 none
	floor     map[int]int64 // lastAcked when the current incarnation started
	lastInInc map[int]int64 // last ID received by the current incarnation
	received  map[int]map[uint64]bool
	maxRecv   map[int]int64
}

func newWorld(t testing.TB) *world {
	return &world{t: t, byID: map[evKey]content{}, byContent: map[string]evKey{},
		done: map[evKey]content{}, names: map[string]*nameState{}}
}

func (w *world) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(w.violations) < 200 {
		w.violations = append(w.violations, msg)
	}
}

func (w *world) name(n string) *nameState {
	s, ok := w.names[n]
	if !ok {
		s = &nameState{lastAcked: map[int]int64{}, floor: map[int]int64{}, lastInInc: map[int]int64{},
			received: map[int]map[uint64]bool{}, maxRecv: map[int]int64{}}
		for p := 0; p < 64; p++ {
			s.lastAcked[p], s.floor[p], s.lastInInc[p], s.maxRecv[p] = -1, -1, -1, -1
		}
		w.names[n] = s
	}
	return s
}

// beginIncarnation is called before a consumer name is (re)opened: from now
// on it must not receive anything at or before what it acknowledged.
func (w *world) beginIncarnation(n string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.name(n)
	for p := range s.lastAcked {
		s.floor[p] = s.lastAcked[p]
		s.lastInInc[p] = -1
	}
}

// observe checks that an event ID always carries the same content and that
// a push is never delivered under two IDs.
func (w *world) observe(k evKey, c content, src string) {
	if prev, ok := w.byID[k]; ok && prev != c && w.lostInReboot[k] {
		w.reusedAfterReboot++
		delete(w.byContent, prev.key)
	} else if ok && prev != c {
		w.violate("partition %d event %d: %s saw %s (crc %08x), earlier it was %s (crc %08x): an ID was reused or bytes changed",
			k.part, k.id, src, c.key, c.crc, prev.key, prev.crc)
		return
	}
	w.byID[k] = c
	if prev, ok := w.byContent[c.key]; ok && prev != k {
		w.violate("push %s appears as partition %d event %d (%s) and as partition %d event %d", c.key, k.part, k.id, src, prev.part, prev.id)
		return
	}
	w.byContent[c.key] = k
}

func (w *world) got(name string, k evKey, c content, ok bool, src string) {
	w.eventsChecked++
	w.progress++
	if !ok && !w.allowBad {
		w.violate("%s: consumer %q received partition %d event %d (%s) with bytes other than were pushed", src, name, k.part, k.id, c.key)
		return
	}
	if !ok {
		s := w.name(name)
		s.lastInInc[k.part] = max(s.lastInInc[k.part], int64(k.id))
		return
	}
	w.observe(k, c, src)
	s := w.name(name)
	id := int64(k.id)
	if id <= s.floor[k.part] {
		w.violate("%s: consumer %q received partition %d event %d again after acknowledging event %d", src, name, k.part, k.id, s.floor[k.part])
	}
	if id <= s.lastInInc[k.part] {
		w.violate("%s: consumer %q received partition %d event %d after event %d", src, name, k.part, k.id, s.lastInInc[k.part])
	}
	s.lastInInc[k.part] = id
	if s.received[k.part] == nil {
		s.received[k.part] = map[uint64]bool{}
	}
	s.received[k.part][k.id] = true
	s.maxRecv[k.part] = max(s.maxRecv[k.part], id)
}

// handle takes one line of a child.
func (w *world) handle(p *proc, line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	src := p.String()
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case "done":
		var part, inc, seq int
		var id uint64
		var pn string
		var crc uint32
		if _, err := fmt.Sscanf(line, "done %d %d %s %d %d %x", &part, &id, &pn, &inc, &seq, &crc); err != nil {
			w.violate("%s: bad line %q", src, line)
			return
		}
		if want := crcOf(payload(pn, inc, seq)); crc != want {
			w.violate("%s: push %s/%d/%d reported crc %08x, want %08x", src, pn, inc, seq, crc, want)
		}
		k, c := evKey{part, id}, content{fmt.Sprintf("%s/%d/%d", pn, inc, seq), crc}
		w.observe(k, c, src)
		w.done[k] = c
		w.pushesDone++
		w.progress++
	case "fail":
		w.pushesFailed++
		if len(w.failSample) < 5 {
			w.failSample = append(w.failSample, src+": "+line)
		}
	case "got":
		var part, inc, seq int
		var id uint64
		var pn string
		var crc uint32
		var ok bool
		if _, err := fmt.Sscanf(line, "got %d %d %s %d %d %x %t", &part, &id, &pn, &inc, &seq, &crc, &ok); err != nil {
			w.violate("%s: bad line %q", src, line)
			return
		}
		w.got(p.name, evKey{part, id}, content{fmt.Sprintf("%s/%d/%d", pn, inc, seq), crc}, ok, src)
	case "acked":
		var part int
		var id int64
		fmt.Sscanf(line, "acked %d %d", &part, &id)
		s := w.name(p.name)
		if id > s.lastInInc[part] {
			w.violate("%s: acknowledged partition %d event %d it never received", src, part, id)
		}
		s.lastAcked[part] = max(s.lastAcked[part], id)
	case "error":
		w.errorsSeen++
		if !w.allowErrors {
			w.violate("%s: %s", src, line)
		} else if len(w.failSample) < 10 {
			w.failSample = append(w.failSample, src+": "+line)
		}
	case "closed":
	default:
		w.violate("%s: unexpected line %q", src, line)
	}
}

// audit reads the topic in this process under name until it has been quiet
// for quiet, checking each event as a consumer process does. It returns what
// it received.
func (w *world) audit(env *faultEnv, topic, name string, quiet time.Duration, extra ...diaspora.Arg) map[evKey]bool {
	t := w.t
	t.Helper()
	w.beginIncarnation(name)
	d := env.driver(t)
	defer d.Close()
	th, err := d.OpenTopic(topic)
	if err != nil {
		w.mu.Lock()
		w.violate("audit %s: open topic: %v", name, err)
		w.mu.Unlock()
		return nil
	}
	args := append([]diaspora.Arg{diaspora.FullDataSelector, diaspora.BytesAllocator}, extra...)
	c, err := th.Consumer(name, args...)
	if err != nil {
		w.mu.Lock()
		w.violate("audit %s: consumer: %v", name, err)
		w.mu.Unlock()
		return nil
	}
	defer c.Close()
	seen := map[evKey]bool{}
	for {
		ev, err := c.Pull().Wait(quiet)
		if errors.Is(err, diaspora.ErrTimeout) {
			break
		}
		if err != nil {
			w.mu.Lock()
			w.violate("audit %s: pull: %v", name, err)
			w.mu.Unlock()
			break
		}
		if ev.ID() == diaspora.NoMoreEvents {
			break
		}
		key, crc, cerr := checkEvent(ev)
		k := evKey{partitionOf(ev), ev.ID()}
		w.mu.Lock()
		if cerr != nil {
			w.violate("audit %s: %v", name, cerr)
		}
		w.got(name, k, content{key.String(), crc}, cerr == nil, "audit "+name)
		w.mu.Unlock()
		seen[k] = true
	}
	return seen
}

// rebooted records which IDs seen so far did not survive the loss of the
// rings (seen is what an audit after it read).
func (w *world) rebooted(seen map[evKey]bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lostInReboot = map[evKey]bool{}
	for k := range w.byID {
		if !seen[k] {
			w.lostInReboot[k] = true
		}
	}
	return len(w.lostInReboot)
}

// lost lists the completed pushes (of those keep selects) that seen lacks.
func (w *world) lost(seen map[evKey]bool, keep func(evKey) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k, c := range w.done {
		if keep != nil && !keep(k) {
			continue
		}
		if !seen[k] {
			out = append(out, fmt.Sprintf("p%d/%d(%s)", k.part, k.id, c.key))
		}
	}
	sort.Strings(out)
	return out
}

// checkNoSkip: a consumer name that started at the beginning must have
// received every existing event up to the last one it received, across all
// its restarts.
func (w *world) checkNoSkip(names ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		s := w.name(n)
		for k := range w.byID {
			if int64(k.id) <= s.maxRecv[k.part] && !s.received[k.part][k.id] {
				w.violate("consumer %q skipped partition %d event %d (%s): it received up to %d", n, k.part, k.id, w.byID[k].key, s.maxRecv[k.part])
			}
		}
	}
}

// progressCheck: a new producer and a new consumer make progress on the
// topic within bound, whatever happened before. IDs it is given go through
// observe, so an ID handed out twice shows.
func (w *world) progressCheck(env *faultEnv, topic, tag string, bound time.Duration) error {
	d, err := diaspora.NewDriver("shm", env.opts)
	if err != nil {
		return fmt.Errorf("progress %s: driver: %w", tag, err)
	}
	defer d.Close()
	th, err := d.OpenTopic(topic)
	if err != nil {
		return fmt.Errorf("progress %s: open topic: %w", tag, err)
	}
	name := "progress-" + tag
	c, err := th.Consumer(name, diaspora.FullDataSelector, diaspora.BytesAllocator, diaspora.MustMetadata(`{"start":"latest"}`))
	if err != nil {
		return fmt.Errorf("progress %s: consumer: %w", tag, err)
	}
	p, err := th.Producer(name, diaspora.MustMetadata(`{"push_timeout":"5s"}`))
	if err != nil {
		return fmt.Errorf("progress %s: producer: %w", tag, err)
	}
	deadline := time.Now().Add(bound)
	n := len(th.Partitions())
	for i := 0; i < n; i++ {
		id, err := p.PushTo(i, payloadMeta(name, 0, i), diaspora.DataView{payload(name, 0, i)}).Wait(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("progress %s: push to partition %d: %w", tag, i, err)
		}
		w.mu.Lock()
		w.observe(evKey{i, id}, content{payloadKey{name, 0, i}.String(), crcOf(payload(name, 0, i))}, "progress producer")
		w.mu.Unlock()
	}
	for got := 0; got < n; {
		ev, err := c.Pull().Wait(max(time.Until(deadline), time.Millisecond))
		if err != nil {
			return fmt.Errorf("progress %s: %d of %d events within %v: %w", tag, got, n, bound, err)
		}
		key, _, cerr := checkEvent(ev)
		if cerr != nil {
			return fmt.Errorf("progress %s: %w", tag, cerr)
		}
		if key.P == name {
			got++
		}
	}
	return nil
}

func (w *world) report() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		w.t.Error(v)
	}
}
