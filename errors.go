package diaspora

import "errors"

// Sentinel errors. Errors returned by this package and by drivers wrap one of
// them, with a message saying what was wrong and with which name or value;
// match them with errors.Is.
var (
	// ErrUnknownDriver is returned by NewDriver for a name nobody registered.
	ErrUnknownDriver = errors.New("unknown driver")
	// ErrTopicExists is returned when creating a topic whose name is taken.
	ErrTopicExists = errors.New("topic already exists")
	// ErrTopicNotFound is returned when opening a topic that does not exist.
	ErrTopicNotFound = errors.New("topic not found")
	// ErrTimeout is returned by Future.Wait when the timeout expires first.
	ErrTimeout = errors.New("timeout")
	// ErrClosed is returned when using a producer, consumer or driver after Close.
	ErrClosed = errors.New("closed")
	// ErrInvalidJSON is returned for text that is not valid JSON.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrInvalidMetadata is returned when a validator rejects an event's metadata.
	ErrInvalidMetadata = errors.New("invalid metadata")
	// ErrInvalidArgument is returned for an argument of the wrong kind or value,
	// and by the methods of an invalid (zero) wrapper.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrStopProcessing is returned by an EventProcessor to stop Process early.
	ErrStopProcessing = errors.New("stop processing")
	// ErrNotSupported is returned when a driver lacks an optional capability.
	ErrNotSupported = errors.New("not supported")
)
