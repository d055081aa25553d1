package segment

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tidwall/wal"
)

// Event is one event of the log. IDs strictly increase along the log and may
// have gaps.
type Event struct {
	ID   uint64
	Meta []byte
	Data []byte
}

// Test hooks, read once by OpenWriter.
var (
	testSyncHook func()           // called after every fsync the Writer issues
	testNow      func() time.Time // clock for frame times and retention
)

// Writer appends frames to the log of one directory. Its methods are safe for
// concurrent use; one mutex serializes them. Only the holder of the
// directory's Lock should open a Writer.
type Writer struct {
	dir    string
	o      Options
	log    *wal.Log
	onSync func()
	now    func() time.Time

	mu        sync.Mutex
	closed    bool
	failed    error  // sticky: after a failed write or fsync the state on disk is unknown
	lastIndex uint64 // wal index of the last frame
	nextID    uint64
	firstID   uint64
	empty     bool
	tailStart uint64 // wal index naming the tail segment file (mirrors tidwall/wal's cycling)
	tailSize  int64
	dirty     bool   // frames written since the last fsync
	dirDirty  bool   // a segment file appeared since the last directory fsync
	permTail  uint64 // the tail whose file got o.Perm, or ^0 (the umask trims wal's modes)
	buf       []byte

	stop chan struct{}
	done chan struct{}
}

func walOptions(o Options) *wal.Options {
	return &wal.Options{
		NoSync:           true, // we fsync ourselves, per policy
		SegmentSize:      o.SegmentSize,
		LogFormat:        wal.Binary,
		SegmentCacheSize: 1,
		NoCopy:           true,
		AllowEmpty:       true,
		DirPerms:         0o700,
		FilePerms:        o.Perm,
	}
}

func corruptAt(dir, file string, off int, before frameHeader, haveBefore bool, after frameHeader, haveAfter bool, err error) *CorruptionError {
	ce := &CorruptionError{Dir: dir, File: file, Offset: int64(off), LastID: unknownID, Err: err}
	if haveBefore {
		ce.FirstID = before.lastID + 1
	}
	if haveAfter {
		ce.LastID = 0
		if after.firstID > 0 {
			ce.LastID = after.firstID - 1
		}
	}
	return ce
}

// OpenWriter opens (or creates) the log in dir for appending. A torn tail
// (an incomplete last entry or a last frame whose CRC fails) is cut back to
// the last whole frame and logged. A damaged frame that valid frames follow
// is kept and logged: readers report it with where it is, and appends go on
// after the last frame, so one flipped bit does not stop a topic. Damage
// that tidwall/wal itself cannot step over (a broken length prefix) is a
// *CorruptionError. The caller should hold the directory's Lock.
func OpenWriter(dir string, o Options) (*Writer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Repair a torn tail before wal.Open sees it: wal.Open fails on it with
	// ErrCorrupt and leaks the file it opened.
	if segs, err := listSegments(dir); err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	} else if len(segs) > 0 {
		if err := repairTail(dir, segs[len(segs)-1].name, o); err != nil {
			return nil, err
		}
	}
	log, err := wal.Open(dir, walOptions(o))
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			if segs, lerr := listSegments(dir); lerr == nil && len(segs) > 0 {
				name := segs[len(segs)-1].name
				if data, rerr := os.ReadFile(filepath.Join(dir, name)); rerr == nil {
					if sc := scanSegment(data, nil); sc.bad >= 0 {
						_, h, after := findValidFrame(data, sc.bad+1)
						return nil, corruptAt(dir, name, sc.bad, sc.last, sc.frames > 0, h, after, err)
					}
				}
			}
		}
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		log.Close()
		if err == nil {
			err = errors.New("wal.Open left no segment file")
		}
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	tail := segs[len(segs)-1]
	data, err := os.ReadFile(filepath.Join(dir, tail.name))
	if err != nil {
		log.Close()
		return nil, err
	}
	sc := scanSegment(data, nil)
	if sc.bad >= 0 {
		// A damaged frame kept by repairTail: the next ID is past the
		// highest whole frame.
		if h, ok := highestFrame(data, sc); ok {
			sc.last, sc.frames = h, max(sc.frames, 1)
		}
	}

	w := &Writer{dir: dir, o: o, log: log, onSync: testSyncHook, now: testNow,
		tailStart: tail.start, tailSize: int64(len(data)), dirDirty: true, permTail: ^uint64(0)}
	w.fixTailPerm()
	if w.now == nil {
		w.now = time.Now
	}
	if w.lastIndex, err = log.LastIndex(); err != nil {
		log.Close()
		return nil, err
	}
	if err := w.loadIDs(segs, sc); err != nil {
		log.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil { // wal.Open may have created or renamed files
		log.Close()
		return nil, err
	}
	w.dirDirty = false
	if o.Sync == SyncAsync {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.syncLoop()
	}
	return w, nil
}

// loadIDs finds NextID (from the last frame) and FirstID (from the first).
func (w *Writer) loadIDs(segs []segFile, tail segScan) error {
	found := tail.frames > 0
	last := tail.last
	for i := len(segs) - 2; i >= 0 && !found; i-- {
		data, err := os.ReadFile(filepath.Join(w.dir, segs[i].name))
		if err != nil {
			return err
		}
		sc := scanSegment(data, nil)
		if sc.bad >= 0 {
			return corruptAt(w.dir, segs[i].name, sc.bad, sc.last, sc.frames > 0, frameHeader{}, false, sc.badErr)
		}
		found, last = sc.frames > 0, sc.last
	}
	if !found {
		w.empty = true
		w.nextID, w.firstID = w.o.FirstID, w.o.FirstID
		return nil
	}
	w.nextID = last.lastID + 1
	w.firstID = last.firstID
	for _, s := range segs {
		h, ok, err := readFirstFrame(filepath.Join(w.dir, s.name))
		if err != nil {
			return err
		}
		if ok {
			w.firstID = h.firstID
			break
		}
	}
	return nil
}

// Append writes evs as one frame: one write and, under SyncAlways, one fsync.
// IDs must strictly increase and the first must be >= NextID, else
// ErrOutOfOrder. An empty slice is a no-op.
func (w *Writer) Append(evs []Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.failed != nil {
		return w.failed
	}
	if len(evs) == 0 {
		return nil
	}
	if evs[0].ID < w.nextID {
		return fmt.Errorf("%w: event %d is below the log's next ID %d", ErrOutOfOrder, evs[0].ID, w.nextID)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID <= evs[i-1].ID {
			return fmt.Errorf("%w: event %d follows event %d in the batch", ErrOutOfOrder, evs[i].ID, evs[i-1].ID)
		}
	}
	buf, err := appendFrame(w.buf[:0], evs, w.now().UnixNano())
	if err != nil {
		return err
	}
	w.buf = buf
	idx := w.lastIndex + 1
	// Mirror tidwall/wal's segment cycling so we know which file to fsync
	// and when the directory gained an entry.
	if w.tailSize > int64(w.o.SegmentSize) {
		w.tailStart, w.tailSize, w.dirDirty = idx, 0, true
	}
	if err := w.log.Write(idx, buf); err != nil {
		w.failed = fmt.Errorf("segment: append to %s failed; reopen the writer: %w", w.dir, err)
		return w.failed
	}
	w.lastIndex = idx
	w.fixTailPerm()
	w.tailSize += int64(uvarintLen(uint64(len(buf))) + len(buf))
	if w.tailSize >= int64(w.o.SegmentSize) {
		w.tailStart, w.tailSize, w.dirDirty = idx+1, 0, true
	}
	if w.empty {
		w.firstID, w.empty = evs[0].ID, false
	}
	w.nextID = evs[len(evs)-1].ID + 1
	if cap(w.buf) > 32<<20 {
		w.buf = nil
	}
	w.dirty = true
	if w.o.Sync == SyncAlways {
		if err := w.syncLocked(); err != nil {
			return err
		}
	}
	return nil
}

// fixTailPerm gives the tail segment file exactly o.Perm once it exists:
// tidwall/wal creates files through the umask, which would take a group's
// write access from a shared topic.
func (w *Writer) fixTailPerm() {
	if w.permTail == w.tailStart {
		return
	}
	if os.Chmod(filepath.Join(w.dir, segmentName(w.tailStart)), w.o.Perm) == nil {
		w.permTail = w.tailStart
	}
}

func (w *Writer) hook() {
	if w.onSync != nil {
		w.onSync()
	}
}

// syncLocked fsyncs the tail segment and, if needed, the directory. A failed
// fsync is sticky: the kernel may have dropped the dirty pages.
func (w *Writer) syncLocked() error {
	if err := w.log.Sync(); err != nil {
		w.failed = fmt.Errorf("segment: fsync %s failed; reopen the writer: %w", w.dir, err)
		return w.failed
	}
	w.hook()
	w.dirty = false
	if w.dirDirty {
		if err := syncDir(w.dir); err != nil {
			w.failed = fmt.Errorf("segment: fsync directory %s failed; reopen the writer: %w", w.dir, err)
			return w.failed
		}
		w.hook()
		w.dirDirty = false
	}
	return nil
}

// syncLoop is the SyncAsync background goroutine. It fsyncs through its own
// descriptor of the tail file so Append is not blocked during the fsync
// (fsync flushes the inode, whichever descriptor names it).
func (w *Writer) syncLoop() {
	defer close(w.done)
	t := time.NewTicker(w.o.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.closed || w.failed != nil || (!w.dirty && !w.dirDirty) {
			w.mu.Unlock()
			continue
		}
		path := filepath.Join(w.dir, segmentName(w.tailStart))
		dirSync := w.dirDirty
		w.dirty, w.dirDirty = false, false
		w.mu.Unlock()

		err := fsyncPath(path)
		if err == nil {
			w.hook()
			if dirSync {
				if err = syncDir(w.dir); err == nil {
					w.hook()
				}
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.mu.Lock()
			w.failed = fmt.Errorf("segment: background fsync of %s failed; reopen the writer: %w", path, err)
			w.mu.Unlock()
			w.o.Logger.Error("segment: background fsync failed", "dir", w.dir, "file", path, "err", err)
		} else if err != nil {
			// The tail moved (retention); retry next tick.
			w.mu.Lock()
			w.dirty, w.dirDirty = true, true
			w.mu.Unlock()
		}
	}
}

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// NextID returns one past the last appended ID (Options.FirstID when empty).
func (w *Writer) NextID() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextID
}

// FirstID returns the oldest event ID still stored (NextID when empty).
func (w *Writer) FirstID() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.empty {
		return w.nextID
	}
	return w.firstID
}

// Sync fsyncs everything appended so far.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.failed != nil {
		return w.failed
	}
	return w.syncLocked()
}

// Close stops the background goroutine, syncs (unless SyncNone) and closes
// the log. tidwall/wal itself fsyncs the tail file on close.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.mu.Unlock()
	if w.stop != nil {
		close(w.stop)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.o.Sync != SyncNone && w.failed == nil {
		err = w.syncLocked()
	}
	if cerr := w.log.Close(); err == nil {
		err = cerr
	}
	return err
}

// highestFrame returns the frame with the highest IDs of a segment: the
// last before any damage, or one of the valid frames after it.
func highestFrame(data []byte, sc segScan) (frameHeader, bool) {
	best, found := sc.last, sc.frames > 0
	if sc.bad < 0 {
		return best, found
	}
	for from := sc.bad + 1; from < len(data); {
		off, h, ok := findValidFrame(data, from)
		if !ok {
			break
		}
		if !found || h.lastID > best.lastID {
			best, found = h, true
		}
		from = off + 1
	}
	return best, found
}

// repairTail cuts the segment file name back to its last whole valid frame
// (a torn tail: nothing valid follows the damage) and logs it. Damage that a
// valid frame follows is a *CorruptionError: not a torn write.
func repairTail(dir, name string, o Options) error {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := scanSegment(data, nil)
	if sc.bad < 0 {
		return nil
	}
	if _, h, ok := findValidFrame(data, sc.bad+1); ok {
		o.Logger.Warn("segment: damaged frame kept in the tail segment; readers report it, appends go on after the last frame",
			"error", corruptAt(dir, name, sc.bad, sc.last, sc.frames > 0, h, true, sc.badErr).Error())
		return nil
	}
	if err := writeFileAtomic(dir, path, data[:sc.end], o.Perm); err != nil {
		return fmt.Errorf("segment: repair tail of %s: %w", path, err)
	}
	o.Logger.Warn("segment: cut torn tail of log", "dir", dir, "file", name,
		"offset", sc.end, "bytes_cut", len(data)-sc.end, "reason", sc.badErr.Error())
	return nil
}

// LastID returns the NextID of the log in dir as stored on disk, without the
// lock: one past the highest whole valid frame of the last segment that holds
// one. A torn tail and damage are skipped over (readers report damage, the
// next writer cuts a torn tail). ok is false when the log holds no frame.
func LastID(dir string) (next uint64, ok bool, err error) {
	segs, err := listSegments(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	for i := len(segs) - 1; i >= 0; i-- {
		data, err := os.ReadFile(filepath.Join(dir, segs[i].name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by retention meanwhile
		}
		if err != nil {
			return 0, false, err
		}
		// Damage is for readers to report, with where it is; the next ID
		// only has to be past every whole frame, so that a damaged log
		// never stops a ring from being rebuilt nor makes an ID repeat.
		if h, ok := highestFrame(data, scanSegment(data, nil)); ok {
			return h.lastID + 1, true, nil
		}
	}
	return 0, false, nil
}
