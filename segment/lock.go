package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// LockFile is the name of the writer-election lock file in a log directory.
const LockFile = "LOCK"

// Lock is an exclusive flock on dir/LOCK. The kernel releases it when the
// holding process dies, so the writer role passes to the next process that
// calls TryLock.
type Lock struct {
	f *os.File
}

// TryLock takes the writer lock of dir without blocking. It returns ErrLocked
// if another process, or another Lock in this process, holds it. dir is
// created (0700) if missing; the lock file takes dir's mode.
func TryLock(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	_, fileMode := modesOf(dir)
	// flock needs no write access: read-only, another user of a shared
	// directory can take the lock of a file it did not create.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return nil, err
	}
	fixMode(f, fileMode)
	// flock locks belong to the open file description, so a second open of
	// the same file in this process conflicts too.
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("segment: flock %s: %w", path, err)
	}
	// Record the holder for diagnostics only; the flock is what counts.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// fixMode gives a file this user owns exactly mode: the umask trimmed what
// it was created with, and a lock file of a topic shared with a group must
// be the group's to open.
func fixMode(f *os.File, mode os.FileMode) {
	st, err := f.Stat()
	if err != nil || st.Mode().Perm() == mode {
		return
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == os.Geteuid() {
		f.Chmod(mode)
	}
}

// FixMode is fixMode for the driver's own lock files.
func FixMode(f *os.File, mode os.FileMode) { fixMode(f, mode) }

// Unlock releases the lock. The LOCK file stays: removing it would let two
// processes lock different inodes.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return ErrClosed
	}
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
