package segment

import (
	"fmt"
	"log/slog"
	"os"
	"time"
)

// SyncPolicy says when appended frames are fsynced.
type SyncPolicy int

const (
	// SyncNone leaves frames in the page cache; they survive a process
	// crash, not a machine crash.
	SyncNone SyncPolicy = iota
	// SyncAsync fsyncs in a background goroutine every SyncInterval.
	SyncAsync
	// SyncAlways returns from Append only after the frame is fsynced (and
	// the directory, when the append started a new segment file).
	SyncAlways
)

// ParseSyncPolicy parses "none", "async" or "sync".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "none":
		return SyncNone, nil
	case "async":
		return SyncAsync, nil
	case "sync":
		return SyncAlways, nil
	}
	return 0, fmt.Errorf("segment: unknown sync policy %q (want none, async or sync)", s)
}

func (p SyncPolicy) String() string {
	switch p {
	case SyncNone:
		return "none"
	case SyncAsync:
		return "async"
	case SyncAlways:
		return "sync"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Options configures OpenWriter. Zero values take the defaults.
type Options struct {
	Sync         SyncPolicy
	SyncInterval time.Duration // SyncAsync period; default 100 ms
	SegmentSize  int           // target segment file size; default 8 MiB (wal grows the tail segment's buffer by copying)
	FirstID      uint64        // NextID of an empty log
	Perm         os.FileMode   // segment file mode; default 0600
	Logger       *slog.Logger  // default slog.Default()
}

const (
	defaultSyncInterval = 100 * time.Millisecond
	defaultSegmentSize  = 8 << 20
)

func (o Options) withDefaults() (Options, error) {
	if o.Sync < SyncNone || o.Sync > SyncAlways {
		return o, fmt.Errorf("segment: invalid sync policy %d", int(o.Sync))
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = defaultSyncInterval
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = defaultSegmentSize
	}
	if o.Perm == 0 {
		o.Perm = 0o600
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
