package segment

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// segFile is one tidwall/wal segment file: its name is the wal index of its
// first entry, as 20 decimal digits.
type segFile struct {
	start uint64
	name  string
}

const segNameLen = 20

func segmentName(start uint64) string { return fmt.Sprintf("%020d", start) }

// parseSegmentName accepts exactly the names tidwall/wal uses for live
// segments; ".START", ".END" and ".TEMP" files are transient and skipped.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segNameLen {
		return 0, false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(name, 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// listSegments returns the segment files of dir ordered by first index.
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segFile
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if v, ok := parseSegmentName(e.Name()); ok {
			segs = append(segs, segFile{start: v, name: e.Name()})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	return segs, nil
}

// syncDir fsyncs a directory so that created, renamed or removed entries in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic replaces path with data: write a temporary file in tmpDir,
// fsync it, rename it over path, fsync path's directory. A crash at any point
// leaves either the old or the new content at path.
func writeFileAtomic(tmpDir, path string, data []byte, perm os.FileMode) error {
	return writeFileReplace(tmpDir, path, data, perm, true)
}

// writeFileReplace replaces path with data through a rename, so a reader or
// a crash sees the old or the new content; with fsync false nothing is
// fsynced, which survives the crash of processes but not of the system.
func writeFileReplace(tmpDir, path string, data []byte, perm os.FileMode, fsync bool) error {
	f, err := os.CreateTemp(tmpDir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if !fsync {
		return nil
	}
	if tmpDir != filepath.Dir(path) {
		syncDir(tmpDir) // best effort: the tmp name vanishing need not be durable
	}
	return syncDir(filepath.Dir(path))
}

// readFirstFrame reads and validates the first entry of a segment file.
// ok is false when the file is empty or its first frame is damaged.
func readFirstFrame(path string) (frameHeader, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return frameHeader{}, false, err
	}
	defer f.Close()
	var hb [maxUvarintLen]byte
	n, err := f.ReadAt(hb[:], 0)
	if err != nil && err != io.EOF {
		return frameHeader{}, false, err
	}
	size, k := uvarintPrefix(hb[:n])
	if k <= 0 || size < minFrameLen || size > maxFrameLen {
		return frameHeader{}, false, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return frameHeader{}, false, err
	}
	if int64(k)+int64(size) > fi.Size() {
		return frameHeader{}, false, nil
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(k)); err != nil {
		if err == io.EOF {
			return frameHeader{}, false, nil
		}
		return frameHeader{}, false, err
	}
	h, derr := decodeFrame(buf)
	return h, derr == nil, nil
}

// modesOf derives the modes of what the package creates inside dir from
// dir's own mode, so that a log directory shared with a group (0770) gets
// positions and lock files the group can use, and a private one (0700)
// private ones. A missing dir gives 0700 and 0600.
func modesOf(dir string) (dirMode, fileMode os.FileMode) {
	st, err := os.Stat(dir)
	if err != nil {
		return 0o700, 0o600
	}
	dirMode = st.Mode().Perm() | 0o700
	return dirMode, dirMode &^ 0o111
}

// mkdirAs makes dir (if missing) with exactly mode, whatever the umask.
func mkdirAs(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(dir, mode)
}
