package segment

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppendThenReadBackAcrossSegmentsWithGaps(t *testing.T) {
	dir := t.TempDir()
	evs := makeEvents(100, 3000, 3, 40)
	writeLog(t, dir, Options{SegmentSize: 16 << 10, FirstID: 100}, evs, 37)
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("want several segment files, got %d", len(segs))
	}
	got := readAll(t, dir, 0)
	if len(got) != len(evs) {
		t.Fatalf("read %d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		checkEvent(t, got[i], evs[i])
	}
	// Seek into a gap and onto an exact ID.
	if got := readAll(t, dir, evs[500].ID-1); got[0].ID != evs[500].ID {
		t.Fatalf("Seek into gap: first ID %d, want %d", got[0].ID, evs[500].ID)
	}
	if got := readAll(t, dir, evs[2999].ID); len(got) != 1 || got[0].ID != evs[2999].ID {
		t.Fatalf("Seek to last: got %d events", len(got))
	}
	w, err := OpenWriter(dir, Options{SegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.NextID() != evs[2999].ID+1 || w.FirstID() != 100 {
		t.Fatalf("reopen: NextID %d FirstID %d, want %d and 100", w.NextID(), w.FirstID(), evs[2999].ID+1)
	}
	next, ok, err := LastID(dir)
	if err != nil || !ok || next != w.NextID() {
		t.Fatalf("LastID = %d %v %v, want %d", next, ok, err, w.NextID())
	}
}

func TestEmptyLogUsesFirstIDAndRejectsOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, Options{FirstID: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.NextID() != 50 || w.FirstID() != 50 {
		t.Fatalf("empty log: NextID %d FirstID %d, want 50", w.NextID(), w.FirstID())
	}
	if _, ok, _ := LastID(dir); ok {
		t.Fatal("LastID of an empty log reported ok")
	}
	if err := w.Append(nil); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	for _, bad := range [][]Event{{{ID: 49}}, {{ID: 60}, {ID: 60}}, {{ID: 61}, {ID: 55}}} {
		if err := w.Append(bad); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Append(%v) = %v, want ErrOutOfOrder", bad[0].ID, err)
		}
	}
	if err := w.Append([]Event{{ID: 50}, {ID: 52, Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Event{{ID: 52}}); !errors.Is(err, ErrOutOfOrder) || !strings.Contains(err.Error(), "52") {
		t.Fatalf("duplicate ID: %v, want ErrOutOfOrder naming 52", err)
	}
	if w.NextID() != 53 || w.FirstID() != 50 {
		t.Fatalf("NextID %d FirstID %d, want 53 and 50", w.NextID(), w.FirstID())
	}
}

func TestOpenCutsTornTailAtEveryOffsetOfTheLastFrame(t *testing.T) {
	base := t.TempDir()
	orig := filepath.Join(base, "orig")
	evs := makeEvents(0, 200, 1, 20)
	writeLog(t, orig, Options{SegmentSize: 4 << 10}, evs, 10)
	locs := frameLocs(t, orig)
	last := locs[len(locs)-1]
	lastData, err := os.ReadFile(filepath.Join(orig, last.file))
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	for cut := last.off; cut < last.end; cut++ {
		dir := filepath.Join(base, "cut")
		os.RemoveAll(dir)
		if err := os.CopyFS(dir, os.DirFS(orig)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, last.file), lastData[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		logBuf.Reset()
		w, err := OpenWriter(dir, Options{SegmentSize: 4 << 10, Logger: logger})
		if err != nil {
			t.Fatalf("cut at %d: OpenWriter: %v", cut, err)
		}
		if cut > last.off && !strings.Contains(logBuf.String(), last.file) {
			t.Fatalf("cut at %d: repair not logged with the file name: %q", cut, logBuf.String())
		}
		if w.NextID() != last.first {
			t.Fatalf("cut at %d: NextID %d, want %d", cut, w.NextID(), last.first)
		}
		if err := w.Append(evs[last.first:]); err != nil {
			t.Fatalf("cut at %d: Append: %v", cut, err)
		}
		w.Close()
		got := readAll(t, dir, 0)
		if len(got) != len(evs) {
			t.Fatalf("cut at %d: read %d events, want %d", cut, len(got), len(evs))
		}
		for i := range evs {
			checkEvent(t, got[i], evs[i])
		}
	}
}

func TestOpenCutsLastFrameWithBadCRC(t *testing.T) {
	dir := t.TempDir()
	evs := makeEvents(0, 100, 1, 30)
	writeLog(t, dir, Options{}, evs, 10)
	locs := frameLocs(t, dir)
	last := locs[len(locs)-1]
	flipBit(t, filepath.Join(dir, last.file), last.end-10, 3)
	if _, err := readAllErr(dir); err == nil {
		t.Fatal("reader returned a frame whose CRC fails")
	}
	w, err := OpenWriter(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.NextID() != last.first {
		t.Fatalf("NextID %d, want %d", w.NextID(), last.first)
	}
	if got := readAll(t, dir, 0); len(got) != int(last.first) {
		t.Fatalf("read %d events after repair, want %d", len(got), last.first)
	}
}

func readAllErr(dir string) ([]Event, error) { return readAllErr2(dir, 0) }

func TestBitFlipIsCorruptionNamingFileAndIDsAndSeekSkipsIt(t *testing.T) {
	dir := t.TempDir()
	evs := makeEvents(0, 600, 2, 25) // gapped IDs
	writeLog(t, dir, Options{SegmentSize: 3 << 10}, evs, 6)
	locs := frameLocs(t, dir)
	byID := map[uint64]int{}
	for i, e := range evs {
		byID[e.ID] = i
	}
	segs, _ := listSegments(dir)
	tailFile := segs[len(segs)-1].name
	rng := rand.New(rand.NewPCG(1, 2))
	tested := 0
	for li, loc := range locs {
		if li == len(locs)-1 {
			continue // damage to the last frame is a torn tail, tested above
		}
		positions := []int{loc.off, loc.off + 1, loc.off + 2, loc.end - 1}
		for k := 0; k < 4; k++ {
			positions = append(positions, loc.off+rng.IntN(loc.end-loc.off))
		}
		for _, pos := range positions {
			bit := uint(rng.IntN(8))
			path := filepath.Join(dir, loc.file)
			flipBit(t, path, pos, bit)
			got, err := readAllErr(dir)
			ce, ok := asCorruption(err)
			switch {
			case ok:
				if ce.File != loc.file || ce.FirstID > loc.first || ce.LastID < loc.last || ce.Dir != dir {
					t.Fatalf("flip %s@%d bit %d (frame %d..%d): error %v does not cover the frame", loc.file, pos, bit, loc.first, loc.last, ce)
				}
				if !strings.Contains(ce.Error(), loc.file) {
					t.Fatalf("error text %q lacks the file", ce.Error())
				}
			case err == nil && loc.file == tailFile && pos < loc.off+3:
				// A longer length prefix in the tail segment looks like an
				// entry still being written; wal cannot step over it, so the
				// writer must refuse it.
				if _, werr := OpenWriter(dir, Options{SegmentSize: 3 << 10}); werr == nil {
					t.Fatalf("flip %s@%d: OpenWriter accepted damage before the tail", loc.file, pos)
				} else if _, ok := asCorruption(werr); !ok {
					t.Fatalf("flip %s@%d: OpenWriter error %v is not a CorruptionError", loc.file, pos, werr)
				}
			default:
				t.Fatalf("flip %s@%d bit %d: read %d events, err %v; want a CorruptionError", loc.file, pos, bit, len(got), err)
			}
			// Everything before the damaged frame read back identical.
			if len(got) < byID[loc.first] {
				t.Fatalf("flip %s@%d: only %d events before the damage, want %d", loc.file, pos, len(got), byID[loc.first])
			}
			for i := 0; i < byID[loc.first]; i++ {
				checkEvent(t, got[i], evs[i])
			}
			// Seeking past the reported range reads the rest.
			if ok {
				rest, err := readAllErr2(dir, ce.LastID+1)
				if err != nil {
					t.Fatalf("flip %s@%d: after Seek(%d): %v", loc.file, pos, ce.LastID+1, err)
				}
				want := evs[byID[loc.last]+1:]
				if len(rest) != len(want) {
					t.Fatalf("flip %s@%d: after Seek read %d events, want %d", loc.file, pos, len(rest), len(want))
				}
				for i := range want {
					checkEvent(t, rest[i], want[i])
				}
			}
			if ok && loc.file == tailFile {
				// A damaged frame that whole frames follow is kept: the writer
				// opens and would append after the last frame.
				// A flip in the length prefix breaks wal's own framing; the
				// writer must then refuse, with a CorruptionError.
				w, werr := OpenWriter(dir, Options{SegmentSize: 3 << 10})
				switch _, isCE := asCorruption(werr); {
				case werr != nil && pos < loc.off+3 && isCE:
				case werr != nil:
					t.Fatalf("flip %s@%d: OpenWriter refused a damaged frame that whole frames follow: %v", loc.file, pos, werr)
				default:
					if next := w.NextID(); next != evs[len(evs)-1].ID+1 {
						t.Fatalf("flip %s@%d: NextID %d, want %d (past the last frame)", loc.file, pos, next, evs[len(evs)-1].ID+1)
					}
					w.Close()
				}
			}
			flipBit(t, path, pos, bit)
			tested++
		}
	}
	if tested < 300 {
		t.Fatalf("tested only %d positions", tested)
	}
}

func readAllErr2(dir string, from uint64) ([]Event, error) {
	r, err := OpenReader(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := r.Seek(from); err != nil {
		return nil, err
	}
	var out []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, copyEvent(ev))
	}
}

func TestReaderFollowsTailInProcessAndSeesNewSegments(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, Options{SegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs := makeEvents(0, 500, 1, 50)
	next := 0
	for i := 0; i < len(evs); i += 7 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("before append %d: Next = %v, want io.EOF", i, err)
		}
		if err := w.Append(evs[i:min(i+7, len(evs))]); err != nil {
			t.Fatal(err)
		}
		for ; next < min(i+7, len(evs)); next++ {
			ev, err := r.Next()
			if err != nil {
				t.Fatalf("event %d: %v", next, err)
			}
			checkEvent(t, ev, evs[next])
		}
	}
}

func TestSyncAlwaysFsyncsEveryAppend(t *testing.T) {
	var n int
	testSyncHook = func() { n++ }
	defer func() { testSyncHook = nil }()
	w, err := OpenWriter(t.TempDir(), Options{Sync: SyncAlways, SegmentSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	evs := makeEvents(0, 500, 1, 100)
	for i := 0; i < len(evs); i += 10 {
		if err := w.Append(evs[i : i+10]); err != nil {
			t.Fatal(err)
		}
	}
	if n < 50 {
		t.Fatalf("SyncAlways: %d fsyncs for 50 appends", n)
	}
	w.Close()
}

func TestSyncNoneNeverFsyncs(t *testing.T) {
	var n int
	testSyncHook = func() { n++ }
	defer func() { testSyncHook = nil }()
	w, err := OpenWriter(t.TempDir(), Options{Sync: SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 20; i++ {
		if err := w.Append(makeEvents(uint64(i*10), 10, 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if n != 0 {
		t.Fatalf("SyncNone issued %d fsyncs", n)
	}
}

func TestSyncAsyncFsyncsInBackgroundAndCloseStopsIt(t *testing.T) {
	synced := make(chan struct{}, 100)
	testSyncHook = func() {
		select {
		case synced <- struct{}{}:
		default:
		}
	}
	defer func() { testSyncHook = nil }()
	w, err := OpenWriter(t.TempDir(), Options{Sync: SyncAsync, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(makeEvents(0, 10, 1, 10)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
	case <-time.After(30 * time.Second):
		t.Fatal("no background fsync")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(makeEvents(10, 1, 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	checkNoLeak(t)
}

func TestLockIsExclusiveWithinTheProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	l, err := TryLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock = %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := TryLock(dir)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestPositionsRoundTripValidateNamesAndCRC(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00b", "x..y", strings.Repeat("n", 201)} {
		if err := StorePosition(dir, bad, 1); err == nil {
			t.Fatalf("StorePosition(%q) accepted", bad)
		}
		if _, _, err := LoadPosition(dir, bad); err == nil {
			t.Fatalf("LoadPosition(%q) accepted", bad)
		}
	}
	if _, ok, err := LoadPosition(dir, "c1"); ok || err != nil {
		t.Fatalf("missing position: ok %v err %v", ok, err)
	}
	for _, c := range []string{"c1", "consumer two", strings.Repeat("n", 200), ".hidden"} {
		if err := StorePosition(dir, c, 7); err != nil {
			t.Fatal(err)
		}
		if err := StorePosition(dir, c, 42); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := LoadPosition(dir, c); v != 42 || !ok || err != nil {
			t.Fatalf("LoadPosition(%q) = %d %v %v", c, v, ok, err)
		}
	}
	m, err := Positions(dir)
	if err != nil || len(m) != 4 {
		t.Fatalf("Positions = %v %v", m, err)
	}
	flipBit(t, filepath.Join(dir, positionsDir, "c1"), 6, 1)
	if _, _, err := LoadPosition(dir, "c1"); err == nil {
		t.Fatal("damaged position loaded")
	}
}

func TestRetainNeverPassesLowestConsumerPositionWithoutForce(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(1000, 0)
	testNow = func() time.Time { return clock }
	defer func() { testNow = nil }()
	w, err := OpenWriter(dir, Options{SegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	evs := makeEvents(0, 1000, 1, 30)
	for i := 0; i < len(evs); i += 10 {
		if err := w.Append(evs[i : i+10]); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Second)
	}
	if err := StorePosition(dir, "slow", 255); err != nil {
		t.Fatal(err)
	}
	if err := StorePosition(dir, "fast", 900); err != nil {
		t.Fatal(err)
	}
	before, err := w.Retain(Retention{MaxAge: time.Hour})
	if err != nil || before != 0 {
		t.Fatalf("nothing old enough: removedBefore %d err %v", before, err)
	}
	before, err = w.Retain(Retention{MaxBytes: 1})
	if err != nil || before != 250 || w.FirstID() != 250 {
		t.Fatalf("MaxBytes 1 with a consumer at 255: removedBefore %d FirstID %d err %v, want 250", before, w.FirstID(), err)
	}
	if got := readAll(t, dir, 0); got[0].ID != 250 || len(got) != 750 {
		t.Fatalf("after retention read from %d, %d events", got[0].ID, len(got))
	}
	StorePosition(dir, "slow", 905)
	before, err = w.Retain(Retention{MaxAge: 50 * time.Second})
	if err != nil || before != 500 { // frame time of events 500.. is clock-50s.. at start+50s
		t.Fatalf("MaxAge: removedBefore %d err %v, want 500", before, err)
	}
	before, err = w.Retain(Retention{MaxBytes: 1, Force: true})
	if err != nil || before != 990 {
		t.Fatalf("Force keeps only the last frame: removedBefore %d err %v, want 990", before, err)
	}
	if err := w.Append(makeEvents(1000, 5, 1, 3)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w2, err := OpenWriter(dir, Options{SegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if w2.FirstID() != 990 || w2.NextID() != 1005 {
		t.Fatalf("reopen after retention: FirstID %d NextID %d", w2.FirstID(), w2.NextID())
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for s, want := range map[string]SyncPolicy{"none": SyncNone, "async": SyncAsync, "sync": SyncAlways} {
		if got, err := ParseSyncPolicy(s); got != want || err != nil || got.String() != s {
			t.Fatalf("ParseSyncPolicy(%q) = %v %v", s, got, err)
		}
	}
	if _, err := ParseSyncPolicy("always!"); err == nil {
		t.Fatal("bad policy accepted")
	}
}

func TestWritePositionIsReadBackAndReplaces(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []uint64{3, 9, 4} {
		if err := WritePosition(dir, "fast", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := LoadPosition(dir, "fast")
		if err != nil || !ok || got != v {
			t.Fatalf("LoadPosition after WritePosition(%d) = %d, %v, %v", v, got, ok, err)
		}
	}
	if err := WritePosition(dir, "../escape", 1); err == nil {
		t.Fatal("WritePosition accepted a name that escapes the directory")
	}
}

// TestRepairLeaksNoFile: opening a log with a torn tail, many times over,
// leaves no file descriptor behind (wal.Open, failing on a torn tail,
// used to keep the one it opened).
func TestRepairLeaksNoFile(t *testing.T) {
	dir := t.TempDir()
	o := Options{Sync: SyncNone}
	writeLog(t, dir, o, makeEvents(0, 20, 1, 100), 5)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	before := fds()
	for i := 0; i < 20; i++ {
		locs := frameLocs(t, dir)
		last := locs[len(locs)-1]
		if err := os.Truncate(filepath.Join(dir, last.file), int64(last.end-3)); err != nil {
			t.Fatal(err)
		}
		w, err := OpenWriter(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Append(makeEvents(w.NextID(), 5, 1, 100)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d file descriptors open after 20 repairs, %d before", after, before)
	}
}

// TestAppendAfterKeptDamage: a flipped bit in a middle frame of the tail
// segment does not stop the log: the writer appends after the last frame,
// and a reader reports the damaged frame, then reads everything after it,
// the new events included.
func TestAppendAfterKeptDamage(t *testing.T) {
	dir := t.TempDir()
	evs := makeEvents(0, 40, 1, 64)
	writeLog(t, dir, Options{}, evs, 4)
	locs := frameLocs(t, dir)
	mid := locs[len(locs)/2]
	flipBit(t, filepath.Join(dir, mid.file), (mid.off+mid.end)/2, 3)
	w, err := OpenWriter(dir, Options{})
	if err != nil {
		t.Fatalf("OpenWriter with a damaged middle frame: %v", err)
	}
	if err := w.Append(makeEvents(40, 5, 1, 64)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_, err = readAllErr(dir)
	ce, ok := asCorruption(err)
	if !ok || ce.FirstID > mid.first || ce.LastID < mid.last {
		t.Fatalf("reading past the damage: got %v, want a CorruptionError covering %d..%d", err, mid.first, mid.last)
	}
	rest, err := readAllErr2(dir, ce.LastID+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) == 0 || rest[len(rest)-1].ID != 44 {
		t.Fatalf("after the damage read %d events, the last %v; want up to the appended 44", len(rest), rest)
	}
}
