package diaspora

import "fmt"

// Driver is the user-facing handle of a driver, made by NewDriver. The zero
// value is invalid.
type Driver struct {
	d DriverInterface
}

// NewDriver makes the driver registered under name with its options; an
// unknown name is an error wrapping ErrUnknownDriver.
func NewDriver(name string, options Metadata) (Driver, error) {
	f, ok := drivers.lookup(name)
	if !ok {
		return Driver{}, fmt.Errorf("diaspora: driver %q: %w (registered: %v)", name, ErrUnknownDriver, Drivers())
	}
	d, err := f(options)
	if err != nil {
		return Driver{}, fmt.Errorf("diaspora: driver %q: %w", name, err)
	}
	if d == nil {
		return Driver{}, fmt.Errorf("diaspora: driver %q: factory returned no driver: %w", name, ErrInvalidArgument)
	}
	return Driver{d}, nil
}

// Valid reports whether the driver wraps an implementation.
func (d Driver) Valid() bool { return d.d != nil }

// Interface returns the wrapped implementation (nil when invalid).
func (d Driver) Interface() DriverInterface { return d.d }

// CreateTopic creates a topic. args, in any order and each at most once, are
// the topic options (Metadata), its Validator, PartitionSelector and
// Serializer; the ones left out, or given as zero values, are the defaults.
func (d Driver) CreateTopic(name string, args ...TopicArg) error {
	if d.d == nil {
		return errInvalid("Driver")
	}
	if name == "" {
		return fmt.Errorf("diaspora: creating a topic: %w: empty name", ErrInvalidArgument)
	}
	var (
		options Metadata
		v       Validator
		s       PartitionSelector
		z       Serializer
		seen    = map[string]bool{}
	)
	for i, a := range args {
		kind := fmt.Sprintf("%T", a)
		if seen[kind] {
			return fmt.Errorf("diaspora: creating topic %q: argument %d: %w: %s given twice", name, i, ErrInvalidArgument, kind)
		}
		seen[kind] = true
		switch a := a.(type) {
		case Metadata:
			options = a
		case Validator:
			v = a
		case PartitionSelector:
			s = a
		case Serializer:
			z = a
		default:
			return fmt.Errorf("diaspora: creating topic %q: argument %d of type %s: %w", name, i, kind, ErrInvalidArgument)
		}
	}
	return d.d.CreateTopic(name, options, v.Interface(), s.Interface(), z.Interface())
}

// OpenTopic opens an existing topic; a missing one is an error wrapping
// ErrTopicNotFound.
func (d Driver) OpenTopic(name string) (TopicHandle, error) {
	if d.d == nil {
		return TopicHandle{}, errInvalid("Driver")
	}
	t, err := d.d.OpenTopic(name)
	if err != nil {
		return TopicHandle{}, err
	}
	if t == nil {
		return TopicHandle{}, fmt.Errorf("diaspora: opening topic %q: %w", name, ErrTopicNotFound)
	}
	return TopicHandle{t}, nil
}

// TopicExists reports whether a topic exists.
func (d Driver) TopicExists(name string) (bool, error) {
	if d.d == nil {
		return false, errInvalid("Driver")
	}
	return d.d.TopicExists(name)
}

// ListTopics returns every topic with its description, which holds at least
// "num_partitions", and "validator", "serializer" and "partition_selector" as
// objects.
func (d Driver) ListTopics() (map[string]Metadata, error) {
	if d.d == nil {
		return nil, errInvalid("Driver")
	}
	return d.d.ListTopics()
}

// DefaultThreadPool returns the pool producers and consumers use unless given
// another; the invalid pool for an invalid driver.
func (d Driver) DefaultThreadPool() ThreadPool {
	if d.d == nil {
		return ThreadPool{}
	}
	return ThreadPool{d.d.DefaultThreadPool()}
}

// MakeThreadPool makes a pool of n goroutines; 0 runs work inline. A negative
// n is an error wrapping ErrInvalidArgument.
func (d Driver) MakeThreadPool(n ThreadCount) (ThreadPool, error) {
	if d.d == nil {
		return ThreadPool{}, errInvalid("Driver")
	}
	if n < 0 {
		return ThreadPool{}, fmt.Errorf("diaspora: thread count %d: %w: want >= 0", int(n), ErrInvalidArgument)
	}
	p, err := d.d.MakeThreadPool(n)
	if err != nil {
		return ThreadPool{}, err
	}
	return ThreadPool{p}, nil
}

// Close releases the driver.
func (d Driver) Close() error {
	if d.d == nil {
		return errInvalid("Driver")
	}
	return d.d.Close()
}
