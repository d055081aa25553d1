package segment

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Retention says how much of the front of the log Retain may remove. A frame
// goes when the log is larger than MaxBytes before it, or when it is older
// than MaxAge. Frames holding an event at or after the lowest stored consumer
// position are kept unless Force is set; the last frame is always kept, so
// the log never forgets its next ID.
type Retention struct {
	MaxBytes int64
	MaxAge   time.Duration
	Force    bool
}

// Retain truncates the front of the log on a frame boundary and returns the
// first event ID still stored: every event before removedBefore is gone.
func (w *Writer) Retain(r Retention) (removedBefore uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.failed != nil {
		return 0, w.failed
	}
	first := w.firstID
	if w.empty {
		first = w.nextID
	}
	if w.empty || (r.MaxBytes <= 0 && r.MaxAge <= 0) {
		return first, nil
	}
	lowest := uint64(unknownID)
	if !r.Force {
		pos, err := Positions(w.dir)
		if err != nil {
			return 0, err
		}
		for _, p := range pos {
			lowest = min(lowest, p)
		}
	}
	segs, err := listSegments(w.dir)
	if err != nil {
		return 0, err
	}
	sizes := make([]int64, len(segs))
	var remaining int64
	for i, s := range segs {
		fi, err := os.Stat(filepath.Join(w.dir, s.name))
		if err != nil {
			return 0, err
		}
		sizes[i] = fi.Size()
		remaining += sizes[i]
	}
	cutoff := w.now().Add(-r.MaxAge).UnixNano()
	drop := func(h frameHeader, before int64) bool {
		if h.lastID >= lowest || h.lastID+1 >= w.nextID {
			return false
		}
		return (r.MaxBytes > 0 && before > r.MaxBytes) || (r.MaxAge > 0 && h.time < cutoff)
	}

	var cutIdx uint64
	cutID := first
scan:
	for i, s := range segs {
		if i+1 < len(segs) {
			// Whole segment: everything in it precedes the next segment's
			// first frame, and frame times do not decrease.
			nh, ok, err := readFirstFrame(filepath.Join(w.dir, segs[i+1].name))
			if err != nil {
				return 0, err
			}
			if ok && nh.firstID <= lowest &&
				((r.MaxBytes > 0 && remaining-sizes[i] >= r.MaxBytes) || (r.MaxAge > 0 && nh.time < cutoff)) {
				cutIdx, cutID = segs[i+1].start, nh.firstID
				remaining -= sizes[i]
				continue
			}
		}
		data, err := os.ReadFile(filepath.Join(w.dir, s.name))
		if err != nil {
			return 0, err
		}
		off, idx := 0, s.start
		for {
			fr, n, st := parseEntry(data[off:])
			if st == entryEnd {
				break
			}
			var h frameHeader
			derr := errBadEntry
			if st == entryOK {
				h, derr = decodeFrame(fr)
			}
			if derr != nil {
				return 0, corruptAt(w.dir, s.name, off, frameHeader{}, false, frameHeader{}, false, derr)
			}
			if !drop(h, remaining) {
				cutID = h.firstID
				break scan
			}
			remaining -= int64(n)
			off += n
			idx++
			cutIdx = idx
		}
	}
	firstIdx, err := w.log.FirstIndex()
	if err != nil {
		return 0, err
	}
	if cutIdx <= firstIdx {
		return first, nil
	}
	if err := w.log.TruncateFront(cutIdx); err != nil {
		w.failed = fmt.Errorf("segment: truncate %s before wal index %d failed; reopen the writer: %w", w.dir, cutIdx, err)
		return 0, w.failed
	}
	if err := syncDir(w.dir); err != nil {
		return 0, err
	}
	w.hook()
	segs, err = listSegments(w.dir)
	if err != nil {
		return 0, err
	}
	if len(segs) > 0 {
		t := segs[len(segs)-1]
		if fi, err := os.Stat(filepath.Join(w.dir, t.name)); err == nil {
			w.tailStart, w.tailSize = t.start, fi.Size()
		}
	}
	w.firstID = cutID
	w.o.Logger.Info("segment: retention removed events", "dir", w.dir, "before", cutID)
	return cutID, nil
}
