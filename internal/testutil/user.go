// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
)

// UnprivilegedUserName is the user permission tests run commands as; CI
// creates it, and UnprivilegedUser creates it when it is missing.
const UnprivilegedUserName = "diaspora-test"

// UnprivilegedUser returns the uid and gid of UnprivilegedUserName, creating
// the user (as a system user without a home) when it does not exist. It skips
// the test when not run as root, which it needs to act as another user.
func UnprivilegedUser(t testing.TB) (uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	u, err := user.Lookup(UnprivilegedUserName)
	if err != nil {
		if out, err := exec.Command("useradd", "-r", "-M", "-s", "/bin/false", UnprivilegedUserName).CombinedOutput(); err != nil {
			t.Fatalf("no user %s and useradd failed: %v: %s", UnprivilegedUserName, err, out)
		}
		if u, err = user.Lookup(UnprivilegedUserName); err != nil {
			t.Fatal(err)
		}
	}
	id, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("user %s has uid %q and gid %q", UnprivilegedUserName, u.Uid, u.Gid)
	}
	return uint32(id), uint32(g)
}

// SharingGroupName is the group the group-sharing tests put two
// unprivileged users in.
const SharingGroupName = "diaspora-share"

// GroupMember is an unprivileged user of SharingGroupName.
type GroupMember struct {
	Name          string
	UID, GID      uint32 // the user and its primary group
	SharedGroupID uint32 // the gid of SharingGroupName
}

// GroupMembers returns two unprivileged users, both members of
// SharingGroupName, creating the users and the group when they are missing
// (system users without a home). It skips the test when not run as root.
func GroupMembers(t testing.TB) [2]GroupMember {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run processes as other users")
	}
	if _, err := user.LookupGroup(SharingGroupName); err != nil {
		if out, err := exec.Command("groupadd", "-r", SharingGroupName).CombinedOutput(); err != nil {
			t.Fatalf("no group %s and groupadd failed: %v: %s", SharingGroupName, err, out)
		}
	}
	g, err := user.LookupGroup(SharingGroupName)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	var out [2]GroupMember
	for i, name := range []string{UnprivilegedUserName, UnprivilegedUserName + "2"} {
		if _, err := user.Lookup(name); err != nil {
			if b, err := exec.Command("useradd", "-r", "-M", "-s", "/bin/false", name).CombinedOutput(); err != nil {
				t.Fatalf("no user %s and useradd failed: %v: %s", name, err, b)
			}
		}
		if b, err := exec.Command("usermod", "-a", "-G", SharingGroupName, name).CombinedOutput(); err != nil {
			t.Fatalf("usermod -a -G %s %s: %v: %s", SharingGroupName, name, err, b)
		}
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("user %s has uid %q and gid %q", name, u.Uid, u.Gid)
		}
		out[i] = GroupMember{Name: name, UID: uint32(uid), GID: uint32(gid), SharedGroupID: uint32(shared)}
	}
	return out
}

// ReachableCopy copies the running test binary into a new 0755 directory
// that every user can reach, for children run as other users, and returns
// its path.
func ReachableCopy(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dshm-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := dir + "/" + "test.bin"
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
