package diaspora

import (
	"fmt"
	"sync/atomic"
)

// PartitionSelector is the user-facing handle of a topic's
// PartitionSelectorInterface. The zero value stands for the "default" (round
// robin) selector when given to Driver.CreateTopic, which makes a fresh one
// per topic; as it holds no state, its own SetPartitions and
// SelectPartitionFor return errors wrapping ErrInvalidArgument: use
// PartitionSelectorFromMetadata(Metadata{}) for a usable default selector.
type PartitionSelector struct {
	s PartitionSelectorInterface
}

// NewPartitionSelector wraps s; a nil s gives the zero value.
func NewPartitionSelector(s PartitionSelectorInterface) PartitionSelector {
	return PartitionSelector{s}
}

// PartitionSelectorFromMetadata builds the selector registered under the
// "type" field of config ("default" when absent); an unknown type is an error
// wrapping ErrInvalidArgument.
func PartitionSelectorFromMetadata(config Metadata) (PartitionSelector, error) {
	s, err := fromConfig(&selectors, config)
	if err != nil {
		return PartitionSelector{}, err
	}
	return PartitionSelector{s}, nil
}

// Interface returns the implementation; for the zero value, a new default
// selector.
func (p PartitionSelector) Interface() PartitionSelectorInterface {
	if p.s == nil {
		return &defaultSelector{}
	}
	return p.s
}

var errZeroSelector = fmt.Errorf("diaspora: the zero PartitionSelector holds no partitions: %w", ErrInvalidArgument)

// SetPartitions tells the selector the partitions of its topic.
func (p PartitionSelector) SetPartitions(parts []PartitionInfo) error {
	if p.s == nil {
		return errZeroSelector
	}
	return p.s.SetPartitions(parts)
}

// SelectPartitionFor returns the partition of an event; requested is
// AnyPartition when the producer did not ask for one.
func (p PartitionSelector) SelectPartitionFor(md Metadata, requested int) (int, error) {
	if p.s == nil {
		return 0, errZeroSelector
	}
	return p.s.SelectPartitionFor(md, requested)
}

// Metadata returns the selector's config; {"type":"default"} for the default.
func (p PartitionSelector) Metadata() Metadata {
	if p.s == nil {
		return defaultConfig
	}
	return p.s.Metadata()
}

func (PartitionSelector) isTopicArg() {}

// defaultSelector maps a requested partition p to p % n and picks the others
// round robin. It is safe for concurrent use.
type defaultSelector struct {
	n    atomic.Int64
	next atomic.Uint64
}

func (d *defaultSelector) SetPartitions(p []PartitionInfo) error {
	d.n.Store(int64(len(p)))
	return nil
}

func (d *defaultSelector) SelectPartitionFor(_ Metadata, requested int) (int, error) {
	n := d.n.Load()
	switch {
	case n == 0:
		return 0, fmt.Errorf("diaspora: default partition selector: %w: no partitions (SetPartitions not called or given none)", ErrInvalidArgument)
	case requested >= 0:
		return int(int64(requested) % n), nil
	case requested == AnyPartition && n == 1:
		return 0, nil // no shared counter to bump
	case requested == AnyPartition:
		return int((d.next.Add(1) - 1) % uint64(n)), nil
	}
	return 0, fmt.Errorf("diaspora: default partition selector: requested partition %d: %w", requested, ErrInvalidArgument)
}

func (d *defaultSelector) Metadata() Metadata { return defaultConfig }
