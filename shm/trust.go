package shm

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Trust says which files of a shared directory (such as /dev/shm, where any
// user may create files) Open accepts. Everything else there may have been
// put by another user: a file of theirs mapped by us would let them read
// and forge what we write.
//
// A file is trusted when it is a regular file (never a symbolic link: the
// last component is opened with O_NOFOLLOW), its permission bits are within
// Perm, and it is owned by the caller's effective uid, by one of Owners, or
// belongs to one of Groups (only a member of a group can give a file that
// group, so a group the topic is shared with vouches for its members).
type Trust struct {
	Owners []uint32    // owners accepted besides the caller's effective uid
	Groups []uint32    // groups whose files are accepted
	Perm   os.FileMode // the widest permission bits accepted; 0 means 0600
	// Any accepts any owner and mode, for tools that only look (a
	// symbolic link is still refused).
	Any bool
}

// AnyOwner is the Trust of a tool that inspects files without trusting them.
var AnyOwner = Trust{Any: true}

// FileOwner is who owns a file and with which permission bits.
type FileOwner struct {
	UID, GID uint32
	Perm     os.FileMode
}

func ownerOf(st *unix.Stat_t) FileOwner {
	return FileOwner{UID: st.Uid, GID: st.Gid, Perm: os.FileMode(st.Mode & 0o7777)}
}

// check returns nil when t accepts a file of path with the status st.
func (t Trust) check(path string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("shm: %s is not a regular file (mode %#o)", path, st.Mode)
	}
	if t.Any {
		return nil
	}
	perm := t.Perm
	if perm == 0 {
		perm = 0o600
	}
	var why []string
	uid := uint32(os.Geteuid())
	if st.Uid != uid && !slices.Contains(t.Owners, st.Uid) && !slices.Contains(t.Groups, st.Gid) {
		why = append(why, fmt.Sprintf("belongs to uid %d, group %d, not to you (uid %d) nor to the topic's owner or group", st.Uid, st.Gid, uid))
	}
	if got := os.FileMode(st.Mode & 0o7777); got&^perm != 0 {
		why = append(why, fmt.Sprintf("has mode %#o, wider than %#o", got, perm))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: shm: %s %s: refusing a file another user may have put there or written",
		os.ErrPermission, path, strings.Join(why, " and "))
}

// OpenFile opens dir/name read-write without following a symbolic link and
// checks the open file (not the name, which could change meanwhile) against
// t.
func (t Trust) OpenFile(dir, name string) (*os.File, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	return t.openPath(dir+"/"+name, unix.O_RDWR)
}

func (t Trust) openPath(path string, flags int) (*os.File, error) {
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("%w: shm: %s is a symbolic link: refusing to follow it", os.ErrPermission, path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := t.check(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// O_NONBLOCK only kept open(2) from hanging on a FIFO put there.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFile reads a small file of a shared directory that t trusts.
func (t Trust) ReadFile(path string, max int64) ([]byte, FileOwner, error) {
	f, err := t.openPath(path, unix.O_RDONLY)
	if err != nil {
		return nil, FileOwner{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, FileOwner{}, err
	}
	if st.Size > max {
		return nil, FileOwner{}, fmt.Errorf("shm: %s is %d bytes, more than %d", path, st.Size, max)
	}
	b := make([]byte, st.Size)
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, FileOwner{}, err
	}
	return b, ownerOf(&st), nil
}

// WriteFileAtomic writes data to dir/name through a new temporary file
// (O_CREAT|O_EXCL|O_NOFOLLOW, so nothing another user put there is written
// through) renamed into place: a symbolic link or a file planted at name is
// replaced, never followed. With gid >= 0 the file is given that group.
func WriteFileAtomic(dir, name string, data []byte, perm os.FileMode, gid int) error {
	if err := ValidName(name); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s/.%s.tmp-%d-%d", dir, name, os.Getpid(), tmpSeq.Add(1))
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = f.Chmod(perm) // exactly perm, whatever the umask
	if err == nil && gid >= 0 {
		err = f.Chown(-1, gid)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dir+"/"+name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// OwnerOf says who owns the file at path, without following a link.
func OwnerOf(path string) (FileOwner, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return FileOwner{}, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return ownerOf(&st), nil
}
