// Command diaspora-shmctl manages the topics and rings of diaspora-shm: it
// creates, lists, inspects, deletes and completes topics, shows the rings in
// shared memory with the processes attached to them, cleans rings left behind
// by dead processes, and produces and consumes events from the shell.
//
// Run "diaspora-shmctl --help" for the commands and their options.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

const progName = "diaspora-shmctl"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status. Every failure
// is one line on stderr; a panic is reported the same way, without a stack,
// unless DIASPORA_SHMCTL_DEBUG is set.
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
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	if err := a.execute(args); err != nil {
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
