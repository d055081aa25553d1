package diaspora

import "fmt"

// TopicHandle is the user-facing handle of an open topic, from
// Driver.OpenTopic. The zero value is invalid.
type TopicHandle struct {
	t TopicHandleInterface
}

// Valid reports whether the handle wraps an implementation.
func (t TopicHandle) Valid() bool { return t.t != nil }

// Interface returns the wrapped implementation (nil when invalid).
func (t TopicHandle) Interface() TopicHandleInterface { return t.t }

// Name returns the topic's name; "" when invalid.
func (t TopicHandle) Name() string {
	if t.t == nil {
		return ""
	}
	return t.t.Name()
}

// Driver returns the driver the topic was opened with.
func (t TopicHandle) Driver() Driver {
	if t.t == nil {
		return Driver{}
	}
	return Driver{t.t.Driver()}
}

// Partitions describes the topic's partitions, indexed by partition number.
func (t TopicHandle) Partitions() []PartitionInfo {
	if t.t == nil {
		return nil
	}
	return t.t.Partitions()
}

// Validator returns the topic's validator.
func (t TopicHandle) Validator() Validator {
	if t.t == nil {
		return Validator{}
	}
	return Validator{t.t.Validator()}
}

// PartitionSelector returns the topic's partition selector.
func (t TopicHandle) PartitionSelector() PartitionSelector {
	if t.t == nil {
		return PartitionSelector{}
	}
	return PartitionSelector{t.t.PartitionSelector()}
}

// Serializer returns the topic's serializer.
func (t TopicHandle) Serializer() Serializer {
	if t.t == nil {
		return Serializer{}
	}
	return Serializer{t.t.Serializer()}
}

// Producer makes a producer named name. args, in any order and each at most
// once, may be a BatchSize (default AdaptiveBatchSize; else > 0), a
// MaxNumBatches (default 2; >= 1), an Ordering (default Strict), a ThreadPool
// (default the driver's DefaultThreadPool) and a Metadata of extra options.
// Any other argument, or a bad value, is an error wrapping ErrInvalidArgument
// that names it.
func (t TopicHandle) Producer(name string, args ...Arg) (Producer, error) {
	if t.t == nil {
		return Producer{}, errInvalid("TopicHandle")
	}
	what := fmt.Sprintf("producer %q of topic %q", name, t.t.Name())
	a, err := parseArgs(what, args, kindBatchSize, kindMaxNumBatches, kindOrdering, kindThreadPool, kindMetadata)
	if err != nil {
		return Producer{}, err
	}
	pool := a.pool.p
	if pool == nil {
		pool = t.t.Driver().DefaultThreadPool()
	}
	p, err := t.t.MakeProducer(name, a.batch, a.maxBatches, a.ordering, pool, a.options)
	if err != nil {
		return Producer{}, err
	}
	return Producer{p}, nil
}

// Consumer makes a consumer named name; consumers of the same name share
// their acknowledged positions. args, in any order and each at most once, may
// be a BatchSize (default AdaptiveBatchSize; else > 0), a MaxNumBatches
// (default 2; >= 1), a ThreadPool (default the driver's DefaultThreadPool), a
// DataSelector (default none: events carry metadata only), a DataAllocator
// (default none: data points into the driver's memory), Targets (default all
// partitions; else non-empty, each a distinct partition of the topic) and a
// Metadata of extra options. Any other argument, or a bad value, is an error
// wrapping ErrInvalidArgument that names it.
func (t TopicHandle) Consumer(name string, args ...Arg) (Consumer, error) {
	if t.t == nil {
		return Consumer{}, errInvalid("TopicHandle")
	}
	what := fmt.Sprintf("consumer %q of topic %q", name, t.t.Name())
	a, err := parseArgs(what, args, kindBatchSize, kindMaxNumBatches, kindThreadPool,
		kindDataSelector, kindDataAllocator, kindTargets, kindMetadata)
	if err != nil {
		return Consumer{}, err
	}
	var targets []int
	if a.targets != nil {
		n := len(t.t.Partitions())
		if len(a.targets) == 0 {
			return Consumer{}, fmt.Errorf("diaspora: %s: %w: empty Targets (leave it out for all partitions)", what, ErrInvalidArgument)
		}
		seen := make(map[int]bool, len(a.targets))
		for _, p := range a.targets {
			if p < 0 || p >= n {
				return Consumer{}, fmt.Errorf("diaspora: %s: target partition %d: %w: the topic has %d partitions", what, p, ErrInvalidArgument, n)
			}
			if seen[p] {
				return Consumer{}, fmt.Errorf("diaspora: %s: target partition %d: %w: listed twice", what, p, ErrInvalidArgument)
			}
			seen[p] = true
		}
		targets = append([]int{}, a.targets...)
	}
	pool := a.pool.p
	if pool == nil {
		pool = t.t.Driver().DefaultThreadPool()
	}
	c, err := t.t.MakeConsumer(name, a.batch, a.maxBatches, pool, a.allocator, a.selector, targets, a.options)
	if err != nil {
		return Consumer{}, err
	}
	return Consumer{c}, nil
}

// MarkAsComplete ends the stream: a consumer that has read every event of a
// partition then gets an event whose ID is NoMoreEvents instead of waiting.
// A driver without this capability gives an error wrapping ErrNotSupported.
func (t TopicHandle) MarkAsComplete() error {
	if t.t == nil {
		return errInvalid("TopicHandle")
	}
	c, ok := t.t.(CompleterInterface)
	if !ok {
		return fmt.Errorf("diaspora: topic %q: MarkAsComplete: %w by this driver", t.t.Name(), ErrNotSupported)
	}
	return c.MarkAsComplete()
}
