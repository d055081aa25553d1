package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/internal/topicplugins"
)

// topic is an open topic.
type topic struct {
	d         *Driver
	name, kt  string
	cfg       topicConfig
	infos     []diaspora.PartitionInfo
	validator diaspora.Validator
	selector  diaspora.PartitionSelector
	ser       diaspora.Serializer
	selMu     sync.Mutex // the selector is the user's: one call at a time

	prodMu   sync.Mutex
	prods    []*producer // made from this handle, flushed by MarkAsComplete
	complete atomic.Bool // set by MarkAsComplete: this handle's pushes are refused

	incarnation string // the Kafka topic ID
}

// Incarnation names this creation of the topic (its Kafka topic ID): a
// topic deleted and made again under its name has another.
func (t *topic) Incarnation() string { return t.incarnation }

func newTopic(d *Driver, name, kt string, cfg topicConfig) (*topic, error) {
	if cfg.NumPartitions < 1 || cfg.NumPartitions > 1<<16 {
		// Read from the cluster: checked before it sizes anything.
		return nil, fmt.Errorf("kafka: topic %q: its config says num_partitions %d (want 1..65536)", name, cfg.NumPartitions)
	}
	plugins, err := topicplugins.Build(name, cfg.Validator, cfg.PartitionSelector, cfg.Serializer, cfg.NumPartitions)
	if err != nil {
		return nil, err
	}
	return &topic{d: d, name: name, kt: kt, cfg: cfg, validator: plugins.Validator, selector: plugins.Selector,
		ser: plugins.Serializer, infos: plugins.Infos}, nil
}

func (t *topic) Name() string                     { return t.name }
func (t *topic) Driver() diaspora.DriverInterface { return t.d }
func (t *topic) Partitions() []diaspora.PartitionInfo {
	return append([]diaspora.PartitionInfo(nil), t.infos...)
}
func (t *topic) Validator() diaspora.ValidatorInterface {
	return t.validator.Interface()
}
func (t *topic) PartitionSelector() diaspora.PartitionSelectorInterface {
	return t.selector.Interface()
}
func (t *topic) Serializer() diaspora.SerializerInterface { return t.ser.Interface() }

// MarkAsComplete writes the end-of-stream marker (sizes of all ones) to
// every partition and records the topic as complete in its config.
func (t *topic) MarkAsComplete() error {
	if err := t.d.checkOpen(); err != nil {
		return err
	}
	// Pushes of this handle's producers go before the markers; later ones
	// are refused (another handle's or process's would be written after
	// the markers, and never delivered).
	t.prodMu.Lock()
	t.complete.Store(true)
	prods := append([]*producer(nil), t.prods...)
	t.prodMu.Unlock()
	for _, p := range prods {
		if _, err := p.Flush().Wait(-1); err != nil {
			return fmt.Errorf("kafka: topic %q: flush producer %q before the end of the stream: %w", t.name, p.name, err)
		}
	}
	ctx, cancel := t.d.ctx()
	defer cancel()
	recs := make([]*kgo.Record, len(t.infos))
	for p := range recs {
		recs[p] = &kgo.Record{Topic: t.kt, Partition: int32(p), Value: endMarker()}
	}
	cl, err := kgo.NewClient(append(t.d.opts.base(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafka: topic %q: write the end-of-stream markers: %w", t.name, err)
	}
	cfg := t.cfg
	cfg.Complete = true
	return t.d.writeConfig(ctx, t.name, cfg)
}

func (t *topic) MakeProducer(name string, batch diaspora.BatchSize, maxBatches diaspora.MaxNumBatches, ordering diaspora.Ordering,
	pool diaspora.ThreadPoolInterface, options diaspora.Metadata) (diaspora.ProducerInterface, error) {
	if err := t.d.checkOpen(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%w: producer name is empty", diaspora.ErrInvalidArgument)
	}
	if err := noOptions(options, "producer"); err != nil {
		return nil, err
	}
	if pool == nil {
		pool = t.d.pool
	}
	opts := append(t.d.opts.base(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(t.batchMax()),
		kgo.RecordDeliveryTimeout(t.d.opts.PushTimeout),
		kgo.ClientID("diaspora-"+name),
	)
	if batch > 0 {
		opts = append(opts, kgo.MaxBufferedRecords(int(batch)*max(int(maxBatches), 1)))
	}
	opts = append(opts, t.d.opts.producerOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	p := &producer{t: t, cl: cl, name: name, batch: batch, maxBatches: maxBatches, ordering: ordering, pool: pool}
	t.prodMu.Lock()
	t.prods = append(t.prods, p)
	t.prodMu.Unlock()
	return p, nil
}

func noOptions(md diaspora.Metadata, what string) error {
	var m map[string]any
	if err := md.Decode(&m); err != nil {
		return fmt.Errorf("%w: kafka %s options: want an object: %v", diaspora.ErrInvalidArgument, what, err)
	}
	for k := range m {
		return fmt.Errorf("%w: kafka %s options: unknown key %q", diaspora.ErrInvalidArgument, what, k)
	}
	return nil
}

type producer struct {
	t          *topic
	cl         *kgo.Client
	name       string
	batch      diaspora.BatchSize
	maxBatches diaspora.MaxNumBatches
	ordering   diaspora.Ordering
	pool       diaspora.ThreadPoolInterface
	closed     atomic.Bool
	closeOnce  sync.Once
}

func (p *producer) Name() string                             { return p.name }
func (p *producer) BatchSize() diaspora.BatchSize            { return p.batch }
func (p *producer) MaxNumBatches() diaspora.MaxNumBatches    { return p.maxBatches }
func (p *producer) Ordering() diaspora.Ordering              { return p.ordering }
func (p *producer) ThreadPool() diaspora.ThreadPoolInterface { return p.pool }
func (p *producer) Topic() diaspora.TopicHandleInterface     { return p.t }

// Push validates, picks the partition, and hands the record to the client,
// which produces it idempotently; the future gives its offset.
func (p *producer) Push(md diaspora.Metadata, data diaspora.DataView, partition int) diaspora.Future[diaspora.EventID] {
	fail := func(err error) diaspora.Future[diaspora.EventID] {
		return diaspora.ReadyFuture[diaspora.EventID](0, fmt.Errorf("producer %q of topic %q: %w", p.name, p.t.name, err))
	}
	if p.closed.Load() {
		return fail(diaspora.ErrClosed)
	}
	if p.t.complete.Load() {
		return fail(fmt.Errorf("%w: the topic was marked complete", diaspora.ErrInvalidArgument))
	}
	rec, err := p.t.record(md, data, partition, false)
	if err != nil {
		return fail(err)
	}
	part := int(rec.Partition)
	prom := diaspora.NewPromise[diaspora.EventID]()
	p.cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
		if err != nil {
			prom.Set(0, fmt.Errorf("producer %q of topic %q: partition %d: %w", p.name, p.t.name, part, err))
			return
		}
		prom.Set(diaspora.EventID(r.Offset), nil)
	})
	return prom.Future()
}

// record validates an event and builds its record: the partition the
// selector picks for the requested one (or, exact, the requested one
// itself), the value in the layout of FORMAT.md.
func (t *topic) record(md diaspora.Metadata, data diaspora.DataView, partition int, exact bool) (*kgo.Record, error) {
	if err := t.validator.Validate(md, data); err != nil {
		return nil, err
	}
	part := partition
	if !exact {
		t.selMu.Lock()
		var err error
		part, err = t.selector.SelectPartitionFor(md, partition)
		t.selMu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if part < 0 || part >= len(t.infos) {
		return nil, fmt.Errorf("%w: partition %d of %d", diaspora.ErrInvalidArgument, part, len(t.infos))
	}
	value := make([]byte, headerSize, headerSize+len(md.Bytes())+data.Size())
	value, err := t.ser.Serialize(value, md)
	if err != nil {
		return nil, err
	}
	if len(value) < headerSize {
		return nil, errors.New("the serializer dropped the record header")
	}
	mdLen := len(value) - headerSize
	for _, s := range data {
		value = append(value, s...)
	}
	binary.LittleEndian.PutUint64(value[0:8], uint64(mdLen))
	binary.LittleEndian.PutUint64(value[8:16], uint64(data.Size()))
	if limit := int(t.batchMax()) - recordOverhead; len(value) > limit {
		return nil, fmt.Errorf("%w: an event of %d bytes is larger than topic %q takes (%d: its max_message_bytes, or the cluster's default of %d, less %d of record framing; kafka.message.max.bytes bounds it too)",
			diaspora.ErrInvalidArgument, len(value), t.name, limit, kafkaDefaultMaxMessage, recordOverhead)
	}
	return &kgo.Record{Topic: t.kt, Partition: int32(part), Value: value}, nil
}

// kafkaDefaultMaxMessage is Kafka's default max.message.bytes, the bound of
// a record batch on a topic that did not raise it.
const kafkaDefaultMaxMessage = 1_048_588

// recordOverhead bounds the bytes a batch of one record adds to its value
// (batch and record headers, the origin headers of a forwarded record).
const recordOverhead = 1024

// batchMax is the largest record batch the topic takes.
func (t *topic) batchMax() int32 {
	m := int64(kafkaDefaultMaxMessage)
	if t.cfg.MaxMessageBytes > 0 {
		m = t.cfg.MaxMessageBytes
	}
	return int32(min(m, int64(t.d.opts.MaxMessage)))
}

// Flush waits for every push made so far.
func (p *producer) Flush() diaspora.Future[struct{}] {
	prom := diaspora.NewPromise[struct{}]()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.t.d.opts.PushTimeout+p.t.d.opts.ConnectTimeout)
		defer cancel()
		prom.Set(struct{}{}, p.cl.Flush(ctx))
	}()
	return prom.Future()
}

// Close flushes, then closes the producer's client.
func (p *producer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		_, err = p.Flush().Wait(-1)
		p.cl.Close()
		p.t.prodMu.Lock()
		for i, q := range p.t.prods {
			if q == p {
				p.t.prods = append(p.t.prods[:i], p.t.prods[i+1:]...)
				break
			}
		}
		p.t.prodMu.Unlock()
	})
	return err
}
