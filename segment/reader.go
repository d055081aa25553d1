package segment

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const readAhead = 256 << 10

// Reader reads events by ID from the segment files of a log directory and
// follows the tail while a writer, in any process, appends. It never opens the
// writer's wal.Log: it parses the files and validates every frame's CRC.
// A Reader is not safe for concurrent use.
type Reader struct {
	dir    string
	closed bool

	f        *os.File // current segment file
	segStart uint64
	segName  string
	off      int64 // file offset of the next wal entry

	want     uint64 // deliver only events with ID >= want
	prev     frameHeader
	havePrev bool // prev is the last valid frame before off

	win    []byte // read-ahead window of f
	winOff int64  // file offset of win[0]

	it      frameIter
	inFrame bool
}

// OpenReader opens a reader of the log in dir positioned at its first event.
func OpenReader(dir string) (*Reader, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: log directory %s", ErrNotFound, dir)
		}
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("segment: %s is not a directory", dir)
	}
	r := &Reader{dir: dir}
	if err := r.Seek(0); err != nil {
		return nil, err
	}
	return r, nil
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.dropFile()
	return nil
}

func (r *Reader) dropFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.win, r.winOff, r.inFrame, r.havePrev = r.win[:0], 0, false, false
}

// Seek positions the reader at the first event with ID >= id. It picks the
// last segment whose first frame starts at or before id; Next skips the rest.
func (r *Reader) Seek(id uint64) error {
	if r.closed {
		return ErrClosed
	}
	r.want = id
	return r.reposition()
}

func (r *Reader) reposition() error {
	r.dropFile()
	segs, err := listSegments(r.dir)
	if err != nil {
		return err
	}
	for len(segs) > 0 {
		pick := 0
		for i, s := range segs {
			h, ok, err := readFirstFrame(filepath.Join(r.dir, s.name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if ok && h.firstID <= r.want {
				pick = i
			}
			if ok && h.firstID > r.want {
				break
			}
		}
		err := r.openSeg(segs[pick])
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Removed by retention meanwhile: list again.
		if segs, err = listSegments(r.dir); err != nil {
			return err
		}
	}
	return nil // empty log: Next reports io.EOF until a segment appears
}

func (r *Reader) openSeg(s segFile) error {
	f, err := os.Open(filepath.Join(r.dir, s.name))
	if err != nil {
		return err
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.segStart, r.segName, r.off = f, s.start, s.name, 0
	r.win, r.winOff, r.inFrame = r.win[:0], 0, false
	return nil
}

// window returns the file bytes from off, at least need of them if the file
// has them (fewer at the end of the file).
func (r *Reader) window(off int64, need int) ([]byte, error) {
	if off >= r.winOff && off+int64(need) <= r.winOff+int64(len(r.win)) {
		return r.win[off-r.winOff:], nil
	}
	size := max(need, readAhead)
	if cap(r.win) < size {
		r.win = make([]byte, size)
	}
	r.win = r.win[:size]
	n, err := r.f.ReadAt(r.win, off)
	if err != nil && err != io.EOF {
		r.win = r.win[:0]
		return nil, err
	}
	r.win, r.winOff = r.win[:n], off
	return r.win, nil
}

// readEntry reads the wal entry at r.off.
func (r *Reader) readEntry() (frame []byte, n int, st entryStatus, err error) {
	b, err := r.window(r.off, maxUvarintLen)
	if err != nil {
		return nil, 0, 0, err
	}
	if fr, n, st := parseEntry(b); st != entryPartial || len(b) < maxUvarintLen {
		if st != entryPartial {
			return fr, n, st, nil
		}
		if _, k := uvarintPrefix(b); k == 0 {
			return nil, 0, entryPartial, nil
		}
	}
	size, k := uvarintPrefix(b)
	need := k + int(size)
	// Do not allocate for a length the file cannot hold.
	fi, err := r.f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	if r.off+int64(need) > fi.Size() {
		return nil, 0, entryPartial, nil
	}
	if b, err = r.window(r.off, need); err != nil {
		return nil, 0, 0, err
	}
	fr, n, st := parseEntry(b)
	return fr, n, st, nil
}

// Next returns the next event with ID >= the sought position. At the current
// end of the log it returns io.EOF; a later call picks up newly appended
// frames. Damage is a *CorruptionError (Next keeps returning it; Seek past
// the reported LastID to continue). The returned slices stay valid until the
// next call.
func (r *Reader) Next() (Event, error) {
	if r.closed {
		return Event{}, ErrClosed
	}
	for {
		for r.inFrame && r.it.more() {
			ev := r.it.next()
			if ev.ID >= r.want {
				r.want = ev.ID + 1
				return ev, nil
			}
		}
		r.inFrame = false
		if r.f == nil {
			if err := r.reposition(); err != nil {
				return Event{}, err
			}
			if r.f == nil {
				return Event{}, io.EOF
			}
		}
		fr, n, st, err := r.readEntry()
		if err != nil {
			return Event{}, err
		}
		switch st {
		case entryOK:
			h, derr := decodeFrame(fr)
			if derr == nil && r.havePrev && h.firstID <= r.prev.lastID {
				derr = fmt.Errorf("%w: frame starting at event %d follows event %d", ErrOutOfOrder, h.firstID, r.prev.lastID)
			}
			if derr != nil {
				if err := r.damaged(derr); err != nil {
					return Event{}, err
				}
				continue
			}
			r.off += int64(n)
			r.prev, r.havePrev = h, true
			if h.lastID >= r.want {
				r.it.reset(fr, h)
				r.inFrame = true
			}
		case entryBad:
			if err := r.damaged(errBadEntry); err != nil {
				return Event{}, err
			}
		default: // entryEnd, entryPartial
			moved, err := r.advance(st)
			if err != nil {
				return Event{}, err
			}
			if !moved {
				return Event{}, io.EOF
			}
		}
	}
}

// replaced reports whether the current file's name now names another file:
// a new writer rewrote the tail (repair) or retention rewrote it.
func (r *Reader) replaced() bool {
	fi, err := os.Stat(filepath.Join(r.dir, r.segName))
	if err != nil {
		return false // removed: keep reading the open file, then move on
	}
	cur, err := r.f.Stat()
	return err == nil && !os.SameFile(fi, cur)
}

// nextSeg returns the first segment after the current one.
func (r *Reader) nextSeg() (segFile, bool, error) {
	segs, err := listSegments(r.dir)
	if err != nil {
		return segFile{}, false, err
	}
	for _, s := range segs {
		if s.start > r.segStart {
			return s, true, nil
		}
	}
	return segFile{}, false, nil
}

// advance handles the end of the current file's bytes. It moves to the next
// segment once one exists and the current file has no more entries; a
// partial entry is "not yet written" while the file is the tail, and damage
// once a later segment proves the file sealed.
func (r *Reader) advance(entryStatus) (bool, error) {
	if r.replaced() {
		return true, r.reposition()
	}
	next, ok, err := r.nextSeg()
	if err != nil || !ok {
		return false, err
	}
	// The later segment exists, so every write to this file has completed
	// (tidwall/wal finishes the write before creating the next file): read
	// again to tell a sealed end from an entry that was still being written.
	r.win = r.win[:0]
	_, _, st, err := r.readEntry()
	if err != nil {
		return false, err
	}
	switch st {
	case entryEnd:
		if err := r.openSeg(next); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return true, r.reposition()
			}
			return false, err
		}
		return true, nil
	case entryPartial:
		return true, r.damaged(errTruncEntry)
	}
	return true, nil // a complete entry arrived meanwhile: Next reads it
}

// damaged handles a damaged entry at r.off. It finds the next valid frame to
// bound the affected event IDs; if they all precede the sought position the
// reader skips past the damage (this is how Seek gets past a bad frame),
// otherwise it returns a *CorruptionError.
func (r *Reader) damaged(cause error) error {
	if r.replaced() {
		return r.reposition() // repaired by a new writer: read the new file
	}
	fi, err := r.f.Stat()
	if err != nil {
		return err
	}
	rest := make([]byte, max(fi.Size()-r.off, 0))
	if _, err := r.f.ReadAt(rest, r.off); err != nil && err != io.EOF {
		return err
	}
	p, after, found := findValidFrame(rest, 1)
	var next segFile
	var nextOK bool
	if !found {
		if next, nextOK, err = r.nextSeg(); err != nil {
			return err
		}
		if nextOK {
			after, found, err = readFirstFrame(filepath.Join(r.dir, next.name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	ce := corruptAt(r.dir, r.segName, int(r.off), r.prev, r.havePrev, after, found, cause)
	if found && ce.LastID < r.want && after.firstID > ce.LastID {
		if nextOK {
			return r.openSeg(next)
		}
		r.off += int64(p)
		return nil
	}
	return ce
}
