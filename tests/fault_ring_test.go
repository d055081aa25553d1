package tests

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
)

// ringChildren starts a producer and a consumer process on a topic.
func ringChildren(t *testing.T, env *faultEnv, w *world, topic string) []*proc {
	base := []string{"DSHM_OPTS=" + env.opts.Dump(), "DSHM_TOPIC=" + topic, "DSHM_LIFETIME_MS=60000",
		"DSHM_WINDOW=4", "DSHM_PAUSE_US=500"}
	return []*proc{
		spawn(t, "consumer", "c0", 1, base, nil, w.handle),
		spawn(t, "producer", "p0", 1, base, nil, w.handle),
	}
}

// stopChildren stops children cleanly; a hang or a panic is a violation,
// an error exit (damage was reported) is not.
func stopChildren(w *world, ps []*proc) {
	for _, p := range ps {
		err := p.stop(30 * time.Second)
		w.mu.Lock()
		if err != nil && strings.Contains(err.Error(), "hung") {
			w.violate("%v", err)
		}
		if bad := badOutput(p.stderr.String()); bad != "" {
			w.violate("%v crashed: %s", p, bad)
		}
		w.mu.Unlock()
	}
}

// TestFaultHostileRingWrites writes random bytes over header fields and
// records of a live ring, from the test process with WriteAt, while a
// producer and a consumer process use it. Nobody may panic, read out of
// bounds or hang; a new process either opens the ring or is told what is
// wrong and where; once the damaged ring is deleted (what diaspora-shmctl
// clean does), a new producer and consumer make progress.
func TestFaultHostileRingWrites(t *testing.T) {
	seed := seedFor(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	rounds := 3
	if soak > 0 {
		rounds = 30
	}
	fields := []struct {
		name string
		off  int
		size int
	}{
		{"version", ring.OffVersion, 4}, {"headerSize", ring.OffHeaderSize, 4}, {"capacity", ring.OffCapacity, 8},
		{"readerSlots", ring.OffReaderSlots, 4}, {"flags", ring.OffFlags, 4}, {"firstID", ring.OffFirstID, 8},
		{"tailPos", ring.OffTailPos, 8}, {"tailID", ring.OffTailID, 8}, {"headCache", ring.OffHeadCache, 8},
		{"archivedPos", ring.OffArchivedPos, 8}, {"dataSeq", ring.OffDataSeq, 4}, {"complete", ring.OffComplete, 4},
		{"archiverPID", ring.OffArchiverPID, 4}, {"slot0 state", ring.HeaderBase + ring.SlotOffState, 4},
		{"slot0 releasePos", ring.HeaderBase + ring.SlotOffReleasePos, 8}, {"slot1 releasePos", ring.HeaderBase + ring.SlotSize + ring.SlotOffReleasePos, 8},
	}
	var writes int
	for round := 0; round < rounds; round++ {
		env := newFaultEnv(t)
		env.createTopic(t, "hostile", `{"ring_size":"64KiB","durability":"async","push_timeout":"1s"}`)
		w := newWorld(t)
		w.allowErrors, w.allowBad = true, true
		ps := ringChildren(t, env, w, "hostile")
		time.Sleep(300 * time.Millisecond)
		files := env.ringFiles()
		if len(files) != 1 {
			t.Fatalf("want one ring file, got %v", files)
		}
		f, err := os.OpenFile(files[0], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		var what []string
		for k := 0; k < 20; k++ {
			var buf []byte
			var off int64
			if rng.IntN(2) == 0 {
				fl := fields[rng.IntN(len(fields))]
				buf = make([]byte, fl.size)
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				if rng.IntN(3) == 0 { // plausible values hurt more than noise
					v := uint64(rng.IntN(1 << 20))
					if fl.size == 8 {
						binary.LittleEndian.PutUint64(buf, v)
					} else {
						binary.LittleEndian.PutUint32(buf, uint32(v))
					}
				}
				off = int64(fl.off)
				what = append(what, fl.name)
			} else {
				buf = make([]byte, 1+rng.IntN(48))
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				off = st.Size() - 65536 + rng.Int64N(65536-int64(len(buf)))
				what = append(what, fmt.Sprintf("record bytes at %d", off))
			}
			f.WriteAt(buf, off)
			writes++
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		}
		f.Close()
		time.Sleep(200 * time.Millisecond)
		stopChildren(w, ps)
		// A new process: opens it, or says what and where.
		if d, err := diaspora.NewDriver("shm", env.opts); err == nil {
			if _, err := d.OpenTopic("hostile"); err != nil && !strings.Contains(err.Error(), filepath.Base(files[0])) {
				t.Errorf("opening a damaged ring: %q does not name the ring file", err)
			}
			d.Close()
		}
		env.reboot(t)
		// A hostile writer can stop the archiver: IDs the lost ring held
		// may come again (the reboot bug); that is not what this checks.
		w.rebooted(nil)
		if err := w.progressCheck(env, "hostile", "after-clean", 10*time.Second); err != nil {
			t.Errorf("after the damaged ring was deleted: %v", err)
		}
		w.mu.Lock()
		t.Logf("round %d: wrote over %v; consumer errors %d, events seen %d, samples %v", round, what, w.errorsSeen, w.eventsChecked, w.failSample)
		w.mu.Unlock()
		w.report()
	}
	t.Logf("RESULT hostile ring: rounds=%d hostile_writes=%d", rounds, writes)
}

// TestFaultRingWrongSizeOrVersion: a ring file of the wrong size, of another
// format version or with another magic is refused with an error naming the
// file and the field; deleting it rebuilds the ring from the log, with every
// event there.
func TestFaultRingWrongSizeOrVersion(t *testing.T) {
	cases := []struct {
		name, want string
		damage     func(path string) error
	}{
		{"half size", "file size", func(p string) error { st, _ := os.Stat(p); return os.Truncate(p, st.Size()/2) }},
		{"one page more", "file size", func(p string) error { st, _ := os.Stat(p); return os.Truncate(p, st.Size()+4096) }},
		{"empty", "size 0", func(p string) error { return os.Truncate(p, 0) }},
		{"next version", fmt.Sprintf("version %d", ring.Version+1), func(p string) error { return patch(p, ring.OffVersion, []byte{ring.Version + 1, 0, 0, 0}) }},
		{"version 1", "version 1", func(p string) error { return patch(p, ring.OffVersion, []byte{1, 0, 0, 0}) }},
		{"other magic", "magic", func(p string) error { return patch(p, ring.OffMagic, []byte("NOTARING")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newFaultEnv(t)
			env.createTopic(t, "sized", `{"ring_size":"64KiB","durability":"async"}`)
			w := newWorld(t)
			defer w.report()
			d := env.driver(t)
			th, _ := d.OpenTopic("sized")
			p, _ := th.Producer("p")
			for i := 0; i < 20; i++ {
				id, err := p.Push(payloadMeta("p", 0, i), diaspora.DataView{payload("p", 0, i)}).Wait(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				w.done[evKey{0, id}] = content{payloadKey{"p", 0, i}.String(), crcOf(payload("p", 0, i))}
			}
			d.Close()
			path := env.ringFiles()[0]
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			d2 := env.driver(t)
			_, err := d2.OpenTopic("sized")
			d2.Close()
			if err == nil {
				t.Fatalf("a ring with %s was opened without an error", tc.name)
			}
			if !strings.Contains(err.Error(), filepath.Base(path)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should name the file %s and say %q", err, filepath.Base(path), tc.want)
			}
			env.reboot(t)
			seen := w.audit(env, "sized", "after", time.Second)
			if lost := w.lost(seen, nil); len(lost) > 0 {
				t.Errorf("events lost after the damaged ring was replaced: %v", lost)
			}
			if err := w.progressCheck(env, "sized", "after", 10*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

func patch(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(b, off)
	return err
}

// TestFaultRingShrunkWhileMapped truncates a ring file that a producer and a
// consumer process have mapped: touching the lost pages raises SIGBUS. The
// processes must not crash; they may report errors.
func TestFaultRingShrunkWhileMapped(t *testing.T) {
	env := newFaultEnv(t)
	env.createTopic(t, "shrunk", `{"ring_size":"64KiB","durability":"async","push_timeout":"1s"}`)
	w := newWorld(t)
	w.allowErrors, w.allowBad = true, true
	defer w.report()
	ps := ringChildren(t, env, w, "shrunk")
	time.Sleep(300 * time.Millisecond)
	if err := os.Truncate(env.ringFiles()[0], 8192); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	stopChildren(w, ps)
	env.reboot(t)
	if err := w.progressCheck(env, "shrunk", "after", 10*time.Second); err != nil {
		t.Error(err)
	}
}
