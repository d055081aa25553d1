package diaspora

import "fmt"

// Event is the user-facing handle of an event a consumer pulled. The zero
// value is invalid: it has empty metadata, no data, the ID NoMoreEvents, and
// Acknowledge returns an error wrapping ErrInvalidArgument.
type Event struct {
	e EventInterface
}

// NewEvent wraps a driver's event; a nil e gives the invalid event.
func NewEvent(e EventInterface) Event { return Event{e} }

// Valid reports whether the event wraps an implementation.
func (e Event) Valid() bool { return e.e != nil }

// Interface returns the wrapped implementation (nil when invalid).
func (e Event) Interface() EventInterface { return e.e }

// Metadata returns the event's metadata.
func (e Event) Metadata() Metadata {
	if e.e == nil {
		return Metadata{}
	}
	return e.e.Metadata()
}

// Data returns the bytes the consumer's DataSelector chose: in the consumer's
// DataAllocator's memory, or, without an allocator, a view into the driver's
// memory valid until the event is acknowledged or its consumer closes.
func (e Event) Data() DataView {
	if e.e == nil {
		return nil
	}
	return e.e.Data()
}

// Partition returns the partition the event belongs to.
func (e Event) Partition() PartitionInfo {
	if e.e == nil {
		return PartitionInfo{}
	}
	return e.e.Partition()
}

// ID returns the event's ID in its partition; NoMoreEvents marks the end of a
// completed topic.
func (e Event) ID() EventID {
	if e.e == nil {
		return NoMoreEvents
	}
	return e.e.ID()
}

// Acknowledge marks all events of this partition up to this one as done for
// the consumer's name.
func (e Event) Acknowledge() error {
	if e.e == nil {
		return errInvalid("Event")
	}
	return e.e.Acknowledge()
}

// errInvalid is the error of a method called on a zero wrapper.
func errInvalid(what string) error {
	return fmt.Errorf("diaspora: invalid (zero) %s: %w", what, ErrInvalidArgument)
}
