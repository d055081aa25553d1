// Package driver is the "shm" driver of diaspora-shm: topics whose partitions
// are lock-free rings in shared memory (package ring), made durable by a
// segment log on disk (package segment). Import it for its side effect,
//
//	import _ "github.com/diaspora-shm/diaspora/driver"
//
// and open it with diaspora.NewDriver("shm", options). Every process that
// opens a topic is a peer: producers write events once into a ring, consumers
// in any process read them in place, one process per partition archives the
// ring into the log, and consumer names resume after their last acknowledged
// event. README.md documents the options, the durability levels and the
// lifetime of zero-copy data.
package driver
