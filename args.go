package diaspora

import (
	"fmt"
	"math"
)

// Arg is an optional argument of TopicHandle.Producer and TopicHandle.Consumer.
// It is satisfied by BatchSize, MaxNumBatches, Ordering, ThreadPool,
// DataSelector, DataAllocator, Targets and Metadata (extra options), so
// arguments may come in any order and be left out. Each kind may be given at
// most once; a kind that does not apply is an error wrapping
// ErrInvalidArgument.
type Arg interface{ isArg() }

// TopicArg is an optional argument of Driver.CreateTopic, satisfied by
// Metadata (topic options), Validator, PartitionSelector and Serializer.
type TopicArg interface{ isTopicArg() }

// EventID identifies an event within its partition; IDs count from 0.
type EventID = uint64

// NoMoreEvents is the ID of the event a consumer gets once a topic marked as
// complete has no more events for it.
const NoMoreEvents EventID = math.MaxUint64

// AnyPartition asks the topic's partition selector to choose the partition.
const AnyPartition = -1

// BatchSize is the number of events a producer or consumer groups together:
// AdaptiveBatchSize, or from 1 to MaxBatchSize. Any other value is an error
// wrapping ErrInvalidArgument.
type BatchSize int

// MaxBatchSize (1<<20 events) is the largest fixed BatchSize. A producer holds
// up to BatchSize × MaxNumBatches pushes in memory before it blocks, so the
// two bounds keep that number finite and representable.
const MaxBatchSize BatchSize = 1 << 20

// AdaptiveBatchSize (-1) lets the driver size batches as it sees fit; it is
// the default.
const AdaptiveBatchSize BatchSize = -1

// String returns "adaptive" for AdaptiveBatchSize, else the number.
func (b BatchSize) String() string {
	if b == AdaptiveBatchSize {
		return "adaptive"
	}
	return fmt.Sprint(int(b))
}

func (b BatchSize) check() error {
	if (b <= 0 || b > MaxBatchSize) && b != AdaptiveBatchSize {
		return fmt.Errorf("BatchSize %d: %w: out of range, want AdaptiveBatchSize (-1) or [1, %d]", int(b), ErrInvalidArgument, int(MaxBatchSize))
	}
	return nil
}

// MaxNumBatches bounds the number of batches pending at once; pushes block
// (back-pressure) beyond it. The default is 2; it must be in [1,
// MaxMaxNumBatches], else it is an error wrapping ErrInvalidArgument.
type MaxNumBatches int

// MaxMaxNumBatches (1<<16) is the largest MaxNumBatches.
const MaxMaxNumBatches MaxNumBatches = 1 << 16

func (m MaxNumBatches) check() error {
	if m < 1 || m > MaxMaxNumBatches {
		return fmt.Errorf("MaxNumBatches %d: %w: out of range, want [1, %d]", int(m), ErrInvalidArgument, int(MaxMaxNumBatches))
	}
	return nil
}

// Ordering says whether a producer keeps its events in push order (Strict,
// the default) or may reorder them across batches (Loose).
type Ordering int

// The orderings.
const (
	Strict Ordering = iota
	Loose
)

// String returns "strict", "loose" or the number of an unknown ordering.
func (o Ordering) String() string {
	switch o {
	case Strict:
		return "strict"
	case Loose:
		return "loose"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

func (o Ordering) check() error {
	if o != Strict && o != Loose {
		return fmt.Errorf("ordering %d: %w: want Strict or Loose", int(o), ErrInvalidArgument)
	}
	return nil
}

// ThreadCount is the number of goroutines of a thread pool; 0 runs work
// inline in the caller.
type ThreadCount int

// NumEvents counts events, as the max argument of Consumer.Process.
type NumEvents uint64

// InfiniteEvents makes Consumer.Process run until stopped or timed out.
const InfiniteEvents NumEvents = math.MaxUint64

// Targets lists the partitions a consumer reads; nil means all of them.
type Targets []int

// EventProcessor handles one event in Consumer.Process; it returns
// ErrStopProcessing to stop early.
type EventProcessor func(ev Event) error

func (BatchSize) isArg()     {}
func (MaxNumBatches) isArg() {}
func (Ordering) isArg()      {}
func (ThreadPool) isArg()    {}
func (DataSelector) isArg()  {}
func (DataAllocator) isArg() {}
func (Targets) isArg()       {}

// argSet collects the arguments given to Producer or Consumer.
type argSet struct {
	batch      BatchSize
	maxBatches MaxNumBatches
	ordering   Ordering
	pool       ThreadPool
	selector   DataSelector
	allocator  DataAllocator
	targets    Targets
	options    Metadata
}

// parseArgs applies args over the defaults. allowed lists the kinds that apply,
// as %T prints them (the kind... constants); what names the object being made,
// for error messages.
func parseArgs(what string, args []Arg, allowed ...string) (argSet, error) {
	s := argSet{batch: AdaptiveBatchSize, maxBatches: 2, ordering: Strict}
	seen := make(map[string]bool, len(args))
	for i, a := range args {
		if a == nil {
			return s, fmt.Errorf("diaspora: %s: argument %d is nil: %w", what, i, ErrInvalidArgument)
		}
		kind := fmt.Sprintf("%T", a)
		ok := false
		for _, k := range allowed {
			ok = ok || k == kind
		}
		if !ok {
			return s, fmt.Errorf("diaspora: %s: argument %d of type %s: %w: it does not apply here", what, i, kind, ErrInvalidArgument)
		}
		if seen[kind] {
			return s, fmt.Errorf("diaspora: %s: argument %d: %w: %s given twice", what, i, ErrInvalidArgument, kind)
		}
		seen[kind] = true
		var err error
		switch v := a.(type) {
		case BatchSize:
			s.batch, err = v, v.check()
		case MaxNumBatches:
			s.maxBatches, err = v, v.check()
		case Ordering:
			s.ordering, err = v, v.check()
		case ThreadPool:
			s.pool = v
			if !v.Valid() {
				err = fmt.Errorf("thread pool: %w: the zero ThreadPool", ErrInvalidArgument)
			}
		case DataSelector:
			s.selector = v
		case DataAllocator:
			s.allocator = v
		case Targets:
			s.targets = v
		case Metadata:
			s.options = v
		}
		if err != nil {
			return s, fmt.Errorf("diaspora: %s: %w", what, err)
		}
	}
	return s, nil
}

// Names of argument kinds, as %T prints them.
const (
	kindBatchSize     = "diaspora.BatchSize"
	kindMaxNumBatches = "diaspora.MaxNumBatches"
	kindOrdering      = "diaspora.Ordering"
	kindThreadPool    = "diaspora.ThreadPool"
	kindDataSelector  = "diaspora.DataSelector"
	kindDataAllocator = "diaspora.DataAllocator"
	kindTargets       = "diaspora.Targets"
	kindMetadata      = "diaspora.Metadata"
)
