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
// github.com/diaspora-shm/diaspora/driver.
package diaspora
