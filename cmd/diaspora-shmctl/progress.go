package main

import (
	"fmt"
	"io"
	"time"
)

// progress prints a one-line status on a terminal, at most every 200ms, and
// nothing when stderr is not a terminal.
type progress struct {
	w     io.Writer
	on    bool
	what  string
	total int // 0: unknown
	last  time.Time
	shown bool
}

func (a *app) newProgress(what string, total int) *progress {
	return &progress{w: a.stderr, on: a.stderrIsTerminal(), what: what, total: total}
}

// update shows n done; it is cheap when not shown.
func (p *progress) update(n int) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	p.shown = true
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r\033[K%s: %d/%d", p.what, n, p.total)
	} else {
		fmt.Fprintf(p.w, "\r\033[K%s: %d", p.what, n)
	}
}

// done clears the status line.
func (p *progress) done() {
	if p.on && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
