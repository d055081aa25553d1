package diaspora

import "time"

// DriverInterface is implemented by a driver; users reach it through Driver.
type DriverInterface interface {
	// CreateTopic creates a topic with its options and plug-ins, which are
	// never nil (the Driver wrapper substitutes the defaults).
	CreateTopic(name string, options Metadata, v ValidatorInterface,
		s PartitionSelectorInterface, z SerializerInterface) error
	OpenTopic(name string) (TopicHandleInterface, error)
	TopicExists(name string) (bool, error)
	ListTopics() (map[string]Metadata, error)
	DefaultThreadPool() ThreadPoolInterface
	MakeThreadPool(count ThreadCount) (ThreadPoolInterface, error)
	Close() error
}

// ThreadPoolInterface runs work for producers and consumers. GoroutinePool
// is a ready-made implementation.
type ThreadPoolInterface interface {
	ThreadCount() ThreadCount
	// PushWork queues work; higher priority runs first; with a thread count
	// of 0 it runs work inline.
	PushWork(work func(), priority uint64)
	// Size returns the number of queued works not yet started.
	Size() int
}

// TopicHandleInterface is implemented by a driver's open topic; users reach it
// through TopicHandle.
type TopicHandleInterface interface {
	Name() string
	Driver() DriverInterface
	Partitions() []PartitionInfo
	Validator() ValidatorInterface
	PartitionSelector() PartitionSelectorInterface
	Serializer() SerializerInterface
	// MakeProducer is called with checked arguments, defaults applied.
	MakeProducer(name string, batch BatchSize, maxBatches MaxNumBatches, ordering Ordering,
		pool ThreadPoolInterface, options Metadata) (ProducerInterface, error)
	// MakeConsumer is called with checked arguments, defaults applied; sel nil
	// means metadata only, alloc nil means data points into the driver's
	// memory, targets nil means all partitions.
	MakeConsumer(name string, batch BatchSize, maxBatches MaxNumBatches, pool ThreadPoolInterface,
		alloc DataAllocator, sel DataSelector, targets []int, options Metadata) (ConsumerInterface, error)
}

// ProducerInterface is implemented by a driver's producer; users reach it
// through Producer.
type ProducerInterface interface {
	Name() string
	BatchSize() BatchSize
	MaxNumBatches() MaxNumBatches
	Ordering() Ordering
	ThreadPool() ThreadPoolInterface
	Topic() TopicHandleInterface
	// Push sends an event; partition AnyPartition lets the selector choose.
	Push(md Metadata, data DataView, partition int) Future[EventID]
	Flush() Future[struct{}]
	// Close flushes, then releases resources.
	Close() error
}

// ConsumerInterface is implemented by a driver's consumer; users reach it
// through Consumer.
type ConsumerInterface interface {
	Name() string
	BatchSize() BatchSize
	MaxNumBatches() MaxNumBatches
	ThreadPool() ThreadPoolInterface
	Topic() TopicHandleInterface
	DataAllocator() DataAllocator
	DataSelector() DataSelector
	Pull() Future[Event]
	// Process has the behaviour documented on Consumer.Process; a driver may
	// implement it with ProcessEvents.
	Process(p EventProcessor, timeout time.Duration, max NumEvents, pool ThreadPoolInterface) error
	Unsubscribe() error
	Close() error
}

// EventInterface is implemented by a driver's event; users reach it through
// Event.
type EventInterface interface {
	Metadata() Metadata
	Data() DataView
	Partition() PartitionInfo
	ID() EventID
	// Acknowledge marks all events of this partition up to this one as done
	// for this consumer name.
	Acknowledge() error
}

// ValidatorInterface checks events before they are pushed.
type ValidatorInterface interface {
	// Validate returns an error wrapping ErrInvalidMetadata to reject.
	Validate(md Metadata, data DataView) error
	// Metadata returns the validator's own config, {"type":...,...}.
	Metadata() Metadata
}

// PartitionSelectorInterface chooses the partition of each pushed event. It
// must be safe for concurrent use.
type PartitionSelectorInterface interface {
	SetPartitions(p []PartitionInfo) error
	// SelectPartitionFor returns the partition index for an event;
	// requested is AnyPartition when the producer did not ask for one.
	SelectPartitionFor(md Metadata, requested int) (int, error)
	Metadata() Metadata
}

// SerializerInterface turns metadata into bytes and back.
type SerializerInterface interface {
	// Serialize appends the encoding of md to dst.
	Serialize(dst []byte, md Metadata) ([]byte, error)
	// Deserialize decodes src, which it must not keep: src may be reused.
	Deserialize(src []byte) (Metadata, error)
	Metadata() Metadata
}

// Claim is space reserved in a partition for one event whose data the caller
// writes in place (zero-copy produce); see Producer.Claim.
type Claim interface {
	// Bytes returns exactly the claimed number of writable bytes.
	Bytes() []byte
	// Commit validates (md, Bytes()), then publishes the event; an invalid
	// event's space becomes padding.
	Commit() Future[EventID]
	// Abort turns the space into padding; no event is published.
	Abort() error
}

// ClaimerInterface is an optional interface of a ProducerInterface that
// supports zero-copy produce.
type ClaimerInterface interface {
	Claim(md Metadata, size int, partition int) (Claim, error)
}

// BatchConsumerInterface is an optional interface of a ConsumerInterface
// that hands out several events per call: Consumer.Events and
// Consumer.Process use it when the driver has it (one lock and one wait per
// batch rather than per event), and Pull otherwise.
type BatchConsumerInterface interface {
	// PullBatch waits at most timeout (negative: no limit) for an event,
	// then fills dst with it and the events that follow it and are ready
	// at once, up to len(dst) of them, in the order Pull would return
	// them. It returns how many; 0 only with an error (ErrTimeout when
	// none came). At the end of the stream it returns one event whose ID
	// is NoMoreEvents, as Pull does.
	PullBatch(dst []Event, timeout time.Duration) (int, error)
	// Unread gives back events of the last PullBatch that the caller did
	// not use, in their order: the next pulls return them first.
	Unread(evs []Event)
}

// CompleterInterface is an optional interface of a TopicHandleInterface that
// supports marking the end of a stream.
type CompleterInterface interface {
	MarkAsComplete() error
}
