package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// logHandler prints the library's log records (the driver logs through
// slog.Default) as one line each on stderr, in the tool's own form:
//
//	diaspora-shmctl: warning: segment: cut torn tail of log dir=/r/... bytes_cut=7
//
// Records below warning are dropped: the tool has nothing to say of them.
// Multi-line messages and values are folded into one line.
type logHandler struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string // attributes of WithAttrs, formatted
	group  string // the WithGroup prefix of keys, "g." or ""
}

func newLogHandler(w io.Writer) *logHandler { return &logHandler{mu: &sync.Mutex{}, w: w} }

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(progName + ": warning: ")
	b.WriteString(oneLine(r.Message))
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	n := *h
	n.prefix += b.String()
	return &n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.group += name + "."
	return &n
}

// appendAttr writes " key=value", values quoted when they hold spaces.
func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	if a.Key == "" && v.Any() == nil {
		return
	}
	s := oneLine(v.String())
	if s == "" || strings.ContainsAny(s, " \t\"=") {
		s = strconv.Quote(s)
	}
	b.WriteString(" " + group + a.Key + "=" + s)
}
