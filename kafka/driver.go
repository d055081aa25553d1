// Package kafka is the "kafka" driver of the Diaspora Streaming API: topics
// are Kafka topics, reached with franz-go. A program moves from the shm
// driver to a cluster by opening diaspora.NewDriver("kafka", options)
// instead of "shm"; the API and its behaviour stay (event IDs are offsets,
// a consumer name is a consumer group whose committed offsets are the
// acknowledgements, MarkAsComplete ends every partition). The record
// layout is in FORMAT.md beside this file. Import it for its side effect:
//
//	import _ "github.com/diaspora-shm/diaspora/kafka"
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/diaspora-shm/diaspora"
)

// Name is the name the driver registers under.
const Name = "kafka"

func init() {
	diaspora.RegisterDriver(Name, func(options diaspora.Metadata) (diaspora.DriverInterface, error) {
		return Open(options)
	})
}

// infoPrefix names the one-partition topic that holds a topic's plug-in
// configs, as the Octopus driver names it.
const infoPrefix = "__info_"

// Driver is the kafka driver.
type Driver struct {
	opts driverOptions
	cl   *kgo.Client
	adm  *kadm.Client
	pool *diaspora.GoroutinePool

	mu     sync.Mutex
	pools  []*diaspora.GoroutinePool
	closed bool
}

// Open parses the options and reaches a broker, within the connect timeout
// (kafka.socket.connection.setup.timeout.ms, 10 s by default).
func Open(options diaspora.Metadata) (*Driver, error) {
	o, err := parseDriverOptions(options)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(o.base()...)
	if err != nil {
		return nil, fmt.Errorf("kafka driver: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka driver: no broker of %s answered within %v: %w", strings.Join(o.Seeds, ","), o.ConnectTimeout, err)
	}
	return &Driver{opts: o, cl: cl, adm: kadm.NewClient(cl), pool: diaspora.NewGoroutinePool(0)}, nil
}

// base are the client options every client of the driver shares.
func (o driverOptions) base() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Seeds...),
		kgo.DialTimeout(o.ConnectTimeout),
		kgo.BrokerMaxWriteBytes(max(o.MaxMessage+1<<20, 100<<20)),
		kgo.BrokerMaxReadBytes(max(o.MaxMessage+1<<20, 100<<20)),
		kgo.RetryTimeout(o.ConnectTimeout),
	}
	return append(opts, o.clientOpts...)
}

func (d *Driver) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.opts.ConnectTimeout+d.opts.PushTimeout)
}

func (d *Driver) checkOpen() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("%w: kafka driver", diaspora.ErrClosed)
	}
	return nil
}

// Identity names the cluster and namespace the driver reaches, for the
// forwarder's record of where events came from: "kafka://seed,.../ns".
func (d *Driver) Identity() string {
	seeds := append([]string(nil), d.opts.Seeds...)
	sort.Strings(seeds)
	return "kafka://" + strings.Join(seeds, ",") + "/" + d.opts.Namespace
}

// infoName is the topic of a topic's configs, as Octopus names it:
// "<namespace>.__info_<topic>".
func (d *Driver) infoName(name string) string {
	if d.opts.Namespace == "" {
		return infoPrefix + name
	}
	return d.opts.Namespace + "." + infoPrefix + name
}

// kafkaName is the Kafka topic of a diaspora topic.
func (d *Driver) kafkaName(name string) string {
	if d.opts.Namespace == "" {
		return name
	}
	return d.opts.Namespace + "." + name
}

// topicConfig is the record of a topic's __info_ topic.
type topicConfig struct {
	NumPartitions     int               `json:"num_partitions"`
	ReplicationFactor int               `json:"replication_factor"`
	Validator         diaspora.Metadata `json:"validator"`
	Serializer        diaspora.Metadata `json:"serializer"`
	PartitionSelector diaspora.Metadata `json:"partition_selector"`
	MaxMessageBytes   int64             `json:"max_message_bytes,omitempty"` // the topic's max.message.bytes; 0: the cluster's
	Complete          bool              `json:"complete,omitempty"`
}

// CreateTopic creates the topic, then its __info_ topic with the plug-in
// configs; of two processes creating one name, one gets ErrTopicExists.
func (d *Driver) CreateTopic(name string, options diaspora.Metadata, v diaspora.ValidatorInterface,
	s diaspora.PartitionSelectorInterface, z diaspora.SerializerInterface) error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	if err := validName(name, "topic name"); err != nil {
		return err
	}
	o, err := parseTopicOptions(options)
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	ctx, cancel := d.ctx()
	defer cancel()
	kt := d.kafkaName(name)
	var configs map[string]*string
	if o.MaxMessageBytes > 0 {
		mb := fmt.Sprint(o.MaxMessageBytes)
		configs = map[string]*string{"max.message.bytes": &mb}
	}
	if err := d.createOne(ctx, kt, int32(o.NumPartitions), int16(o.ReplicationFactor), configs); err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	if err := d.createOne(ctx, d.infoName(name), 1, int16(o.ReplicationFactor), nil); err != nil {
		return fmt.Errorf("topic %q: its %s topic: %w", name, d.infoName(name), err)
	}
	cfg := topicConfig{NumPartitions: o.NumPartitions, ReplicationFactor: o.ReplicationFactor,
		Validator: v.Metadata(), Serializer: z.Metadata(), PartitionSelector: s.Metadata(), MaxMessageBytes: o.MaxMessageBytes}
	return d.writeConfig(ctx, name, cfg)
}

func (d *Driver) createOne(ctx context.Context, topic string, partitions int32, rf int16, configs map[string]*string) error {
	resp, err := d.adm.CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("%w: kafka topic %s", diaspora.ErrTopicExists, topic)
	}
	if err != nil {
		return fmt.Errorf("kafka: create topic %s: %w", topic, err)
	}
	return nil
}

func (d *Driver) writeConfig(ctx context.Context, name string, cfg topicConfig) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	res := d.cl.ProduceSync(ctx, &kgo.Record{Topic: d.infoName(name), Partition: 0, Value: b})
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("kafka: write the config of %s: %w", d.kafkaName(name), err)
	}
	return nil
}

// readConfig reads a topic's __info_ topic to its end: the last record is
// its config. A missing topic (or one whose creator has not written its
// config yet) is ErrTopicNotFound.
func (d *Driver) readConfig(ctx context.Context, name string) (topicConfig, error) {
	var cfg topicConfig
	kt := d.kafkaName(name)
	info := d.infoName(name)
	ends, err := d.adm.ListEndOffsets(ctx, info)
	if err != nil {
		return cfg, fmt.Errorf("kafka: topic %s: %w", kt, err)
	}
	end, ok := ends.Lookup(info, 0)
	if !ok || errors.Is(end.Err, kerr.UnknownTopicOrPartition) || end.Offset <= 0 {
		return cfg, fmt.Errorf("%w: kafka topic %s (no config in %s)", diaspora.ErrTopicNotFound, kt, info)
	}
	if end.Err != nil {
		return cfg, fmt.Errorf("kafka: topic %s: %w", kt, end.Err)
	}
	cl, err := kgo.NewClient(append(d.opts.base(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{info: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return cfg, err
	}
	defer cl.Close()
	var last []byte
	var lastOff int64 = -1
	for lastOff < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return cfg, fmt.Errorf("kafka: read the config of %s: %w", kt, err)
		}
		for _, fe := range fs.Errors() {
			return cfg, fmt.Errorf("kafka: read the config of %s: %w", kt, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			last, lastOff = r.Value, r.Offset
		})
	}
	var merged topicConfig
	if err := json.Unmarshal(last, &merged); err != nil {
		return cfg, fmt.Errorf("kafka: topic %s: the config record at offset %d of %s is not JSON: %v", kt, lastOff, info, err)
	}
	if merged.NumPartitions < 1 {
		return cfg, fmt.Errorf("kafka: topic %s: the config record at offset %d of %s has num_partitions %d", kt, lastOff, info, merged.NumPartitions)
	}
	return merged, nil
}

// OpenTopic reads the topic's config and checks the topic itself.
func (d *Driver) OpenTopic(name string) (diaspora.TopicHandleInterface, error) {
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	if err := validName(name, "topic name"); err != nil {
		return nil, err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	cfg, err := d.readConfig(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	t, err := newTopic(d, name, d.kafkaName(name), cfg)
	if err != nil {
		return nil, err
	}
	if details, err := d.adm.ListTopics(ctx, t.kt); err == nil {
		if td, ok := details[t.kt]; ok {
			t.incarnation = td.ID.String()
		}
	}
	return t, nil
}

// TopicExists reports whether the topic and its config are there.
func (d *Driver) TopicExists(name string) (bool, error) {
	if err := d.checkOpen(); err != nil {
		return false, err
	}
	if err := validName(name, "topic name"); err != nil {
		return false, err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	_, err := d.readConfig(ctx, name)
	if errors.Is(err, diaspora.ErrTopicNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ListTopics lists the topics of the namespace, with their configs.
func (d *Driver) ListTopics() (map[string]diaspora.Metadata, error) {
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	ctx, cancel := d.ctx()
	defer cancel()
	all, err := d.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	prefix := d.infoName("")
	out := map[string]diaspora.Metadata{}
	names := all.Names()
	sort.Strings(names)
	for _, t := range names {
		if !strings.HasPrefix(t, prefix) {
			continue
		}
		name := strings.TrimPrefix(t, prefix)
		cfg, err := d.readConfig(ctx, name)
		if errors.Is(err, diaspora.ErrTopicNotFound) {
			continue // being created
		}
		if err != nil {
			return nil, err
		}
		md, err := diaspora.MetadataOf(cfg)
		if err != nil {
			return nil, err
		}
		out[name] = md
	}
	return out, nil
}

// DefaultThreadPool is the driver's pool that runs work inline.
func (d *Driver) DefaultThreadPool() diaspora.ThreadPoolInterface { return d.pool }

// MakeThreadPool makes a pool of count goroutines, stopped by Close.
func (d *Driver) MakeThreadPool(count diaspora.ThreadCount) (diaspora.ThreadPoolInterface, error) {
	if count < 0 {
		return nil, fmt.Errorf("%w: thread count %d", diaspora.ErrInvalidArgument, count)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%w: kafka driver", diaspora.ErrClosed)
	}
	p := diaspora.NewGoroutinePool(count)
	d.pools = append(d.pools, p)
	return p, nil
}

// Close closes the driver's client and stops its pools. Producers and
// consumers have clients of their own: close them first.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	pools := d.pools
	d.mu.Unlock()
	var errs []error
	for _, p := range pools {
		errs = append(errs, p.Close())
	}
	errs = append(errs, d.pool.Close())
	d.cl.Close()
	return errors.Join(errs...)
}
