package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/internal/testutil"
)

// TestFaultOtherUserLockedOut runs this test binary as the unprivileged user
// diaspora-test against a 0600 topic: it must not read or write any ring or
// log file, nor open, push to or pull from the topic through the API.
func TestFaultOtherUserLockedOut(t *testing.T) {
	uid, gid := testutil.UnprivilegedUser(t)
	bin := testutil.ReachableCopy(t) // the binary where the user can reach it
	env := newFaultEnv(t)
	env.createTopic(t, "private", `{"ring_size":"64KiB","durability":"sync"}`)
	d := env.driver(t)
	th, _ := d.OpenTopic("private")
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"secret":1}`), nil).Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("owner")
	if ev, err := c.Pull().Wait(5 * time.Second); err == nil {
		ev.Acknowledge()
	}
	d.Close()
	// Let the user walk to the files, so that only their modes stand in the way.
	for dir := env.root; dir != "/" && dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 && strings.HasPrefix(dir, os.TempDir()) {
			os.Chmod(dir, st.Mode().Perm()|0o011)
		}
	}
	os.Chmod(env.shm, 0o777|os.ModeSticky)
	var files []string
	files = append(files, env.rings()...)
	filepath.Walk(filepath.Join(env.root, "topics"), func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	var mu sync.Mutex
	var lines []string
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), faultRoleEnv+"=intruder", "DSHM_OPTS="+env.opts.Dump(), "DSHM_TOPIC=private",
		"DSHM_FILES="+strings.Join(files, ":"), "HOME=/nonexistent")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("intruder: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("intruder: %v", err)
	}
	mu.Lock()
	lines = strings.Split(strings.TrimSpace(string(out)), "\n")
	mu.Unlock()
	refused := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "allowed") {
			t.Errorf("user %s: %s", testutil.UnprivilegedUserName, l)
		} else {
			refused++
		}
	}
	if refused < 2*len(files) {
		t.Errorf("intruder reported %d refusals for %d files: %v", refused, len(files), lines)
	}
	t.Logf("user %s was refused %d accesses to %d files and the topic", testutil.UnprivilegedUserName, refused, len(files))
}
