// Package diaspora is the Go rendering of the Diaspora Streaming API: topics
// split into partitions, producers that push events (JSON metadata plus
// optional bytes) and consumers that pull them in order, with event IDs
// counting from 0 per partition.
//
// The package has the shape of database/sql: implementers satisfy the small
// ...Interface types and register a factory by name with RegisterDriver;
// users open a driver with NewDriver and hold thin value types (Driver,
// TopicHandle, Producer, Consumer, Event, ThreadPool) that supply defaults and
// check arguments. A zero wrapper is invalid (Valid reports false) and its
// methods return errors wrapping ErrInvalidArgument instead of panicking.
//
// The shared-memory driver registers itself as "shm" from package
// github.com/diaspora-shm/diaspora/driver; a program imports that package
// for its side effect and opens the driver by name:
//
//	import (
//		"github.com/diaspora-shm/diaspora"
//		_ "github.com/diaspora-shm/diaspora/driver"
//	)
//
//	d, err := diaspora.NewDriver("shm", diaspora.MustMetadata(`{"root_path":"/path/to/state"}`))
//
// Processes that open the same root_path share its topics. Creating a
// topic that another process created first fails with ErrTopicExists,
// which a program that only needs the topic to exist can ignore.
// Consumer.Events ends after its timeout passes without an event.
// Event.Acknowledge stores the consumer name's position after the event
// (covering the earlier events of its partition); the shm driver fsyncs it
// unless the consumer was opened with the extra option {"ack_sync":false},
// so acknowledge every N events rather than every one. The examples
// directory of the module holds complete producer, consumer, zero-copy and
// two-process programs; the README documents the driver's options.
package diaspora
