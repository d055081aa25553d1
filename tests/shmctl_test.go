package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// moduleRoot walks up from the working directory to the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TestShmctlEndToEnd builds diaspora-shmctl and runs tests/shmctl_test.sh
// with it: topics, produce and consume across processes, a SIGKILLed
// consumer, ring clean, and bad input.
func TestShmctlEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the command")
	}
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	root := moduleRoot(t)
	bin := buildShmctl(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "tests/shmctl_test.sh", bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DSHM_TEST_ROOT="+filepath.Join(t.TempDir(), "root"))
	out, err := cmd.CombinedOutput()
	t.Logf("tests/shmctl_test.sh:\n%s", out)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("tests/shmctl_test.sh did not finish within 3 minutes")
	}
	if err != nil {
		t.Fatalf("tests/shmctl_test.sh failed: %v", err)
	}
}
