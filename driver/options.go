package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/segment"
)

// Defaults of the driver and topic options. README.md documents each.
const (
	DefaultRingSize = 64 << 20
	MinRingSize     = 64 << 10
	MaxRingSize     = 1 << 30
	// DefaultSegmentSize: tidwall/wal keeps the segment being written in
	// one buffer that grows by copying; at 64 MiB the archiver spent more
	// time growing it (on fresh pages) than writing, and durable topics
	// ran at half the rate they do at 8 MiB.
	DefaultSegmentSize = 8 << 20
	DefaultPushTimeout = 30 * time.Second
	// DefaultClaimTimeout is how long a claim (Producer.Claim, or a batch
	// being written) may stay open before readers give it up and turn it
	// into padding so that the partition moves on; a commit after it fails.
	DefaultClaimTimeout  = 30 * time.Second
	DefaultReaderSlots   = 64
	DefaultNumPartitions = 1
	MaxNumPartitions     = 1024
	maxTopicNameLen      = 128
)

// driverOptions are the options of NewDriver("shm", options).
type driverOptions struct {
	RootPath string // durable directory: topics and their logs
	ShmPath  string // where ring files go
}

// defaultRootPath is $DIASPORA_ROOT, else $XDG_STATE_HOME/diaspora-shm, else
// $HOME/.local/state/diaspora-shm: absolute and per user.
func defaultRootPath() (string, error) {
	if p := os.Getenv("DIASPORA_ROOT"); p != "" {
		return filepath.Abs(p)
	}
	if p := os.Getenv("XDG_STATE_HOME"); p != "" && filepath.IsAbs(p) {
		return filepath.Join(p, "diaspora-shm"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("shm driver: no root_path given, DIASPORA_ROOT unset and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "diaspora-shm"), nil
}

func parseDriverOptions(md diaspora.Metadata) (driverOptions, error) {
	var o driverOptions
	fields, err := objectFields(md, "driver options")
	if err != nil {
		return o, err
	}
	for k, raw := range fields {
		switch k {
		case "root_path":
			o.RootPath, err = stringField(raw, "driver option root_path")
		case "shm_path":
			o.ShmPath, err = stringField(raw, "driver option shm_path")
		default:
			err = fmt.Errorf("%w: unknown driver option %q (known: root_path, shm_path)", diaspora.ErrInvalidArgument, k)
		}
		if err != nil {
			return o, err
		}
	}
	if o.RootPath == "" {
		if o.RootPath, err = defaultRootPath(); err != nil {
			return o, err
		}
	}
	if o.RootPath, err = filepath.Abs(o.RootPath); err != nil {
		return o, fmt.Errorf("%w: driver option root_path: %v", diaspora.ErrInvalidArgument, err)
	}
	if o.ShmPath == "" {
		o.ShmPath = "/dev/shm"
	}
	if o.ShmPath, err = filepath.Abs(o.ShmPath); err != nil {
		return o, fmt.Errorf("%w: driver option shm_path: %v", diaspora.ErrInvalidArgument, err)
	}
	return o, nil
}

// Durability says what a completed push promises.
type Durability string

// The durability levels of a topic.
const (
	DurabilityNone  Durability = "none"  // the ring only: lost with /dev/shm
	DurabilityAsync Durability = "async" // archived to the log in the background, fsynced at an interval
	DurabilitySync  Durability = "sync"  // a push completes once its event is fsynced in the log
)

// topicOptions are a topic's effective options, stored in its topic.json.
type topicOptions struct {
	NumPartitions  int           `json:"num_partitions"`
	RingSize       int           `json:"ring_size"`
	Durability     Durability    `json:"durability"`
	SegmentSize    int           `json:"segment_size"`
	RetentionBytes int64         `json:"retention_bytes"`
	RetentionAge   time.Duration `json:"-"`
	ReaderSlots    int           `json:"reader_slots"`
	Mode           os.FileMode   `json:"-"`
	PushTimeout    time.Duration `json:"-"`
	ClaimTimeout   time.Duration `json:"-"`
}

func defaultTopicOptions() topicOptions {
	return topicOptions{
		NumPartitions: DefaultNumPartitions,
		RingSize:      DefaultRingSize,
		Durability:    DurabilityAsync,
		SegmentSize:   DefaultSegmentSize,
		ReaderSlots:   DefaultReaderSlots,
		Mode:          0o600,
		PushTimeout:   DefaultPushTimeout,
		ClaimTimeout:  DefaultClaimTimeout,
	}
}

var topicOptionNames = []string{"num_partitions", "ring_size", "durability", "segment_size",
	"retention_bytes", "retention_age", "reader_slots", "mode", "push_timeout", "claim_timeout"}

// parseTopicOptions reads the options given to CreateTopic. Unknown keys and
// wrong types are errors naming the key.
func parseTopicOptions(md diaspora.Metadata) (topicOptions, error) {
	o := defaultTopicOptions()
	fields, err := objectFields(md, "topic options")
	if err != nil {
		return o, err
	}
	for k, raw := range fields {
		what := "topic option " + k
		switch k {
		case "num_partitions":
			var n int64
			n, err = intInRange(raw, what, 1, MaxNumPartitions)
			o.NumPartitions = int(n)
		case "ring_size":
			var n int64
			if n, err = sizeField(raw, what); err == nil {
				o.RingSize, err = ringSize(n)
			}
		case "durability":
			var s string
			if s, err = stringField(raw, what); err == nil {
				switch Durability(s) {
				case DurabilityNone, DurabilityAsync, DurabilitySync:
					o.Durability = Durability(s)
				default:
					err = fmt.Errorf("%w: %s must be \"none\", \"async\" or \"sync\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		case "segment_size":
			var n int64
			if n, err = sizeField(raw, what); err == nil && (n < 1<<20 || n > 1<<32) {
				err = fmt.Errorf("%w: %s must be between 1MiB and 4GiB, got %d", diaspora.ErrInvalidArgument, what, n)
			}
			o.SegmentSize = int(n)
		case "retention_bytes":
			o.RetentionBytes, err = sizeField(raw, what)
		case "retention_age":
			var s string
			if s, err = stringField(raw, what); err == nil {
				if o.RetentionAge, err = time.ParseDuration(s); err != nil || o.RetentionAge < 0 {
					err = fmt.Errorf("%w: %s must be a duration such as \"24h\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		case "reader_slots":
			var n int64
			n, err = intInRange(raw, what, 1, 4096)
			o.ReaderSlots = int(n)
		case "mode":
			var s string
			if s, err = stringField(raw, what); err == nil {
				var m uint64
				if m, err = strconv.ParseUint(s, 8, 32); err != nil || m&^0o666 != 0 || m&0o600 != 0o600 {
					err = fmt.Errorf("%w: %s must be an octal file mode such as \"0640\" that lets the owner read and write, got %q", diaspora.ErrInvalidArgument, what, s)
				}
				o.Mode = os.FileMode(m)
			}
		case "push_timeout":
			var s string
			if s, err = stringField(raw, what); err == nil {
				if o.PushTimeout, err = time.ParseDuration(s); err != nil || o.PushTimeout <= 0 {
					err = fmt.Errorf("%w: %s must be a positive duration such as \"10s\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		case "claim_timeout":
			var s string
			if s, err = stringField(raw, what); err == nil {
				if o.ClaimTimeout, err = time.ParseDuration(s); err != nil || o.ClaimTimeout < 10*time.Millisecond || o.ClaimTimeout > 24*time.Hour {
					err = fmt.Errorf("%w: %s must be a duration in [10ms, 24h] such as \"30s\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		default:
			err = fmt.Errorf("%w: unknown topic option %q (known: %s)", diaspora.ErrInvalidArgument, k, strings.Join(topicOptionNames, ", "))
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// metadata renders the effective options, as ListTopics shows them.
func (o topicOptions) metadata() map[string]any {
	m := map[string]any{
		"num_partitions": o.NumPartitions,
		"ring_size":      o.RingSize,
		"durability":     string(o.Durability),
		"segment_size":   o.SegmentSize,
		"reader_slots":   o.ReaderSlots,
		"mode":           fmt.Sprintf("%04o", uint32(o.Mode)),
		"push_timeout":   o.PushTimeout.String(),
		"claim_timeout":  o.ClaimTimeout.String(),
	}
	if o.RetentionBytes > 0 {
		m["retention_bytes"] = o.RetentionBytes
	}
	if o.RetentionAge > 0 {
		m["retention_age"] = o.RetentionAge.String()
	}
	return m
}

func (o topicOptions) syncPolicy() segment.SyncPolicy {
	if o.Durability == DurabilitySync {
		return segment.SyncAlways
	}
	return segment.SyncAsync
}

// ringSize rounds n up to a power of two within the ring's limits.
func ringSize(n int64) (int, error) {
	if n < MinRingSize || n > MaxRingSize {
		return 0, fmt.Errorf("%w: topic option ring_size must be between 64KiB and 1GiB, got %d", diaspora.ErrInvalidArgument, n)
	}
	if n&(n-1) != 0 {
		n = 1 << bits.Len64(uint64(n))
	}
	return int(n), nil
}

// consumerOptions are a consumer's extra options.
type consumerOptions struct {
	Latest  bool          // a new consumer name starts after the last event
	Spin    time.Duration // how long Pull spins before it sleeps on the futex
	AckSync bool          // Acknowledge returns once the position is durable (msync)
	// AckInterval bounds how long an acknowledged position may stay only
	// in memory (the page cache): a background sync makes it durable.
	AckInterval time.Duration
}

// DefaultAckInterval is how often a consumer's acknowledged positions are
// made durable in the background.
const DefaultAckInterval = 100 * time.Millisecond

func parseConsumerOptions(md diaspora.Metadata) (consumerOptions, error) {
	o := consumerOptions{Spin: 50 * time.Microsecond, AckInterval: DefaultAckInterval}
	fields, err := objectFields(md, "consumer options")
	if err != nil {
		return o, err
	}
	for k, raw := range fields {
		what := "consumer option " + k
		switch k {
		case "start", "from":
			var s string
			if s, err = stringField(raw, what); err == nil {
				switch s {
				case "earliest":
				case "latest":
					o.Latest = true
				default:
					err = fmt.Errorf("%w: %s must be \"earliest\" or \"latest\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		case "spin":
			var s string
			if s, err = stringField(raw, what); err == nil {
				if o.Spin, err = time.ParseDuration(s); err != nil || o.Spin < 0 {
					err = fmt.Errorf("%w: %s must be a duration such as \"50us\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		case "ack_sync":
			if err = json.Unmarshal(raw, &o.AckSync); err != nil {
				err = fmt.Errorf("%w: %s must be true or false, got %s", diaspora.ErrInvalidArgument, what, raw)
			}
		case "ack_interval":
			var s string
			if s, err = stringField(raw, what); err == nil {
				if o.AckInterval, err = time.ParseDuration(s); err != nil || o.AckInterval < time.Millisecond || o.AckInterval > time.Hour {
					err = fmt.Errorf("%w: %s must be a duration in [1ms, 1h] such as \"100ms\", got %q", diaspora.ErrInvalidArgument, what, s)
				}
			}
		default:
			err = fmt.Errorf("%w: unknown consumer option %q (known: start, spin, ack_sync, ack_interval)", diaspora.ErrInvalidArgument, k)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// producerOptions are a producer's extra options.
type producerOptions struct {
	PushTimeout time.Duration // 0: the topic's
}

func parseProducerOptions(md diaspora.Metadata) (producerOptions, error) {
	var o producerOptions
	fields, err := objectFields(md, "producer options")
	if err != nil {
		return o, err
	}
	for k, raw := range fields {
		switch k {
		case "push_timeout":
			var s string
			if s, err = stringField(raw, "producer option push_timeout"); err == nil {
				if o.PushTimeout, err = time.ParseDuration(s); err != nil || o.PushTimeout <= 0 {
					err = fmt.Errorf("%w: producer option push_timeout must be a positive duration, got %q", diaspora.ErrInvalidArgument, s)
				}
			}
		default:
			err = fmt.Errorf("%w: unknown producer option %q (known: push_timeout)", diaspora.ErrInvalidArgument, k)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// objectFields splits an options object; the zero Metadata is {}.
func objectFields(md diaspora.Metadata, what string) (map[string]json.RawMessage, error) {
	fields := map[string]json.RawMessage{}
	if !md.IsObject() {
		return nil, fmt.Errorf("%w: %s must be a JSON object, got %s", diaspora.ErrInvalidArgument, what, md.Dump())
	}
	if err := md.Decode(&fields); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", diaspora.ErrInvalidArgument, what, err)
	}
	return fields, nil
}

func stringField(raw json.RawMessage, what string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s must be a string, got %s", diaspora.ErrInvalidArgument, what, raw)
	}
	return s, nil
}

// intField reads an integer, written as such or as an integral float
// (1e3); an integer beyond int64 is an error wrapping strconv.ErrRange.
func intField(raw json.RawMessage, what string) (int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err == nil {
		return n, nil
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("%w: %s must be an integer, got %s", diaspora.ErrInvalidArgument, what, raw)
	}
	if errors.Is(err, strconv.ErrRange) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: %s is out of range [%d, %d], got %s: %w", diaspora.ErrInvalidArgument, what, int64(math.MinInt64), int64(math.MaxInt64), raw, strconv.ErrRange)
	}
	return int64(f), nil
}

// intInRange reads an integer in [lo, hi]; out of range, even beyond int64,
// the error says the range.
func intInRange(raw json.RawMessage, what string, lo, hi int64) (int64, error) {
	n, err := intField(raw, what)
	if errors.Is(err, strconv.ErrRange) || err == nil && (n < lo || n > hi) {
		return 0, fmt.Errorf("%w: %s is out of range: it must be in [%d, %d], got %s", diaspora.ErrInvalidArgument, what, lo, hi, raw)
	}
	return n, err
}

// sizeField accepts a number of bytes or a string such as "64MiB", "1GB", "512k".
func sizeField(raw json.RawMessage, what string) (int64, error) {
	if n, err := intField(raw, what); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%w: %s must not be negative, got %d", diaspora.ErrInvalidArgument, what, n)
		}
		return n, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%w: %s is out of range: a size is at most %d bytes (4 EiB), got %s", diaspora.ErrInvalidArgument, what, int64(maxSize), raw)
	}
	s, err := stringField(raw, what)
	if err != nil {
		return 0, fmt.Errorf("%w: %s must be a size in bytes or a string such as \"64MiB\", got %s", diaspora.ErrInvalidArgument, what, raw)
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", diaspora.ErrInvalidArgument, what, err)
	}
	return n, nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
}

// ParseSize reads a size such as "4096", "64KiB", "64MiB", "1GiB" or "10MB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil { // digits only: beyond int64
		n = maxSize + 1
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		units := make([]string, 0, len(sizeUnits))
		for u := range sizeUnits {
			if u != "" {
				units = append(units, u)
			}
		}
		sort.Strings(units)
		return 0, fmt.Errorf("size %q has an unknown unit (known: %s)", s, strings.Join(units, ", "))
	}
	if n > maxSize/unit {
		return 0, fmt.Errorf("size %q is out of range: a size is at most %d bytes (4 EiB)", s, int64(maxSize))
	}
	return n * unit, nil
}

// maxSize is the largest size ParseSize and size options accept.
const maxSize = 1 << 62
