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
