// Command diaspora-shmctl manages the topics and rings of diaspora-shm: it
// creates, lists, inspects, deletes and completes topics, shows the rings in
// shared memory with the processes attached to them, cleans rings left behind
// by dead processes, and produces and consumes events from the shell.
//
// Run "diaspora-shmctl --help" for the commands and their options.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const progName = "diaspora-shmctl"

func main() {
	// A reader that closes standard output early (| head) makes writes fail
	// with EPIPE instead of killing the process, so that consume can still
	// acknowledge what it wrote.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status. Every failure
// is one line on stderr; a panic is reported the same way, without a stack,
// unless DIASPORA_SHMCTL_DEBUG is set. A failed write to stdout is a failure
// too, except a closed pipe (EPIPE): the reader has all it wants, status 0.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (status int) {
	defer func() {
		if r := recover(); r != nil {
			if os.Getenv("DIASPORA_SHMCTL_DEBUG") != "" {
				panic(r)
			}
			fmt.Fprintf(stderr, "%s: internal error: %s\n", progName, oneLine(fmt.Sprint(r)))
			status = 2
		}
	}()
	// The library's log records become one-line warnings on stderr.
	prevLog := slog.Default()
	slog.SetDefault(slog.New(newLogHandler(stderr)))
	defer slog.SetDefault(prevLog)
	out := &outWriter{w: stdout}
	a := &app{stdin: stdin, stdout: out, stderr: stderr}
	err := a.execute(args)
	if err == nil && out.err != nil {
		err = out.err
	}
	if err != nil && out.err != nil && errors.Is(err, syscall.EPIPE) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", progName, oneLine(errorText(err)))
		return 1
	}
	return 0
}

// errorText drops the package prefix the library puts on its messages.
func errorText(err error) string {
	return strings.TrimPrefix(err.Error(), "diaspora: ")
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// outWriter is standard output: it keeps the first write error, and fails
// every write after it, so that no command can print into a broken output
// and still exit 0.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = &stdoutError{err}
	}
	return n, o.err
}

// stdoutError is a failed write to standard output.
type stdoutError struct{ err error }

func (e *stdoutError) Error() string { return "write standard output: " + e.err.Error() }
func (e *stdoutError) Unwrap() error { return e.err }
