package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The C tests build libdiaspora_shm.so as a user would, compile C programs
// against diaspora_shm.h with gcc, and run them as processes.

var (
	libOnce sync.Once
	libDir  string
	libErr  error
)

// buildLib builds the library once per test binary.
func buildLib(t testing.TB) string {
	t.Helper()
	libOnce.Do(func() {
		libDir, libErr = os.MkdirTemp("", "dshm-capi")
		if libErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(libDir, "libdiaspora_shm.so"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			libErr = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
		}
	})
	if libErr != nil {
		t.Fatal(libErr)
	}
	return libDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if libDir != "" {
		os.RemoveAll(libDir)
	}
	os.Exit(code)
}

// compileC compiles C sources against the library into dir/name.
func compileC(t *testing.T, dir, name string, srcs ...string) string {
	t.Helper()
	lib := buildLib(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is needed for the C tests: ", err)
	}
	exe := filepath.Join(dir, name)
	args := []string{"-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-I.", "-o", exe}
	args = append(args, srcs...)
	args = append(args, "-L"+lib, "-ldiaspora_shm", "-Wl,-rpath,"+lib, "-lpthread")
	cmd := exec.Command("gcc", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return exe
}

// dirs makes a root and a shm directory for one test's topics.
func dirs(t *testing.T) (root, shmDir string) {
	t.Helper()
	root = t.TempDir()
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = ""
	}
	shmDir, err := os.MkdirTemp(base, "dshm-capi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	return root, shmDir
}

// run runs a program to completion and returns its output.
func run(t *testing.T, timeout time.Duration, exe string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(exe), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestCInterfaceEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shm driver is Linux-only")
	}
	exe := compileC(t, t.TempDir(), "api_test", "testdata/api_test.c")
	root, shmDir := dirs(t)
	out := run(t, 2*time.Minute, exe, root, shmDir)
	if !strings.Contains(out, "ok") {
		t.Fatalf("api_test said:\n%s", out)
	}
}
