package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestLogHandlerPrintsOneLinePerRecord(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(newLogHandler(&buf)).With("topic", "sim", "partition", 0)
	l.Info("not shown")
	l.Warn("segment: cut torn tail\nof log", "err", errors.New("first line\nsecond line"), "bytes_cut", 7)
	l.WithGroup("g").Error("archiver stopped, retrying", "dir", "/a b")
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		`diaspora-shmctl: warning: segment: cut torn tail; of log topic=sim partition=0 err="first line; second line" bytes_cut=7`,
		`diaspora-shmctl: warning: archiver stopped, retrying topic=sim partition=0 g.dir="/a b"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRunRoutesLibraryLogs checks that run installs the handler for the
// time of one command, and puts the previous default back.
func TestRunRoutesLibraryLogs(t *testing.T) {
	prev := slog.Default()
	var stdout, stderr bytes.Buffer
	run([]string{"--root", t.TempDir(), "--shm", t.TempDir(), "topic", "list"}, strings.NewReader(""), &stdout, &stderr)
	if slog.Default() != prev {
		t.Error("run left its log handler as the default")
	}
	if _, ok := slog.Default().Handler().(*logHandler); ok {
		t.Error("the default handler is still the tool's")
	}
}
