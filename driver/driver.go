package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/diaspora-shm/diaspora"
)

// Name is the name the driver registers under.
const Name = "shm"

func init() {
	diaspora.RegisterDriver(Name, func(options diaspora.Metadata) (diaspora.DriverInterface, error) {
		return Open(options)
	})
}

// Driver is the shm driver. Users reach it through diaspora.NewDriver("shm",
// options); Open is for code that wants the concrete type.
type Driver struct {
	opts   driverOptions
	logger *slog.Logger
	pool   *diaspora.GoroutinePool

	mu     sync.Mutex
	topics map[string]*topicState
	pools  []*diaspora.GoroutinePool
	closed bool
}

// Open parses the driver options (root_path, shm_path; an unknown key is an
// error) and makes sure both directories exist.
func Open(options diaspora.Metadata) (*Driver, error) {
	o, err := parseDriverOptions(options)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.RootPath, 0o700); err != nil {
		return nil, fmt.Errorf("shm driver: root_path %s: %w", o.RootPath, err)
	}
	if st, err := os.Stat(o.ShmPath); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: shm driver: shm_path %s is not a directory", diaspora.ErrInvalidArgument, o.ShmPath)
	}
	return &Driver{
		opts:   o,
		logger: slog.Default().With("driver", Name),
		pool:   diaspora.NewGoroutinePool(0),
		topics: map[string]*topicState{},
	}, nil
}

// RootPath is the durable directory of the driver's topics.
func (d *Driver) RootPath() string { return d.opts.RootPath }

// ShmPath is the directory of the driver's ring files.
func (d *Driver) ShmPath() string { return d.opts.ShmPath }

// CreateTopic creates a topic; of two processes racing to create the same
// name exactly one succeeds and the other gets ErrTopicExists.
func (d *Driver) CreateTopic(name string, options diaspora.Metadata, v diaspora.ValidatorInterface,
	s diaspora.PartitionSelectorInterface, z diaspora.SerializerInterface) error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	if err := validTopicName(name); err != nil {
		return err
	}
	opts, err := parseTopicOptions(options)
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	return createTopicFiles(d.opts.RootPath, name, opts, v.Metadata(), z.Metadata(), s.Metadata())
}

// OpenTopic opens a topic, mapping (or rebuilding) its rings; the handle is
// shared by every OpenTopic of the name in this driver.
func (d *Driver) OpenTopic(name string) (diaspora.TopicHandleInterface, error) {
	return d.openTopic(name)
}

func (d *Driver) openTopic(name string) (*topicState, error) {
	if err := validTopicName(name); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%w: shm driver", diaspora.ErrClosed)
	}
	if t, ok := d.topics[name]; ok {
		return t, nil
	}
	t, err := openTopicState(d, name)
	if err != nil {
		return nil, err
	}
	d.topics[name] = t
	return t, nil
}

// TopicExists says whether the topic exists under the root path.
func (d *Driver) TopicExists(name string) (bool, error) {
	if err := validTopicName(name); err != nil {
		return false, err
	}
	_, err := os.Stat(filepath.Join(topicDir(d.opts.RootPath, name), topicConfig))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("shm driver: topic %q: %w", name, err)
	}
	return true, nil
}

// ListTopics returns every topic with its effective options and its
// validator, serializer and partition selector configs as objects.
func (d *Driver) ListTopics() (map[string]diaspora.Metadata, error) {
	names, err := listTopicNames(d.opts.RootPath)
	if err != nil {
		return nil, err
	}
	out := make(map[string]diaspora.Metadata, len(names))
	for _, name := range names {
		info, err := TopicInfo(d.opts.RootPath, name)
		if err != nil {
			return nil, err
		}
		out[name] = info
	}
	return out, nil
}

// TopicInfo is what ListTopics shows of one topic.
func TopicInfo(root, name string) (diaspora.Metadata, error) {
	cfg, opts, err := readTopicConfig(root, name)
	if err != nil {
		return diaspora.Metadata{}, err
	}
	m := opts.metadata()
	m["id"] = cfg.ID
	m["created"] = cfg.Created
	m["validator"] = rawJSON(cfg.Validator)
	m["serializer"] = rawJSON(cfg.Serializer)
	m["partition_selector"] = rawJSON(cfg.PartitionSelector)
	_, err = os.Stat(filepath.Join(topicDir(root, name), completeFile))
	m["complete"] = err == nil
	return diaspora.MetadataOf(m)
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("{}"), nil
	}
	return r, nil
}

// DefaultThreadPool runs work inline in the caller.
func (d *Driver) DefaultThreadPool() diaspora.ThreadPoolInterface { return d.pool }

// MakeThreadPool makes a pool of count goroutines, stopped by Close.
func (d *Driver) MakeThreadPool(count diaspora.ThreadCount) (diaspora.ThreadPoolInterface, error) {
	if count < 0 {
		return nil, fmt.Errorf("%w: thread count %d is negative", diaspora.ErrInvalidArgument, count)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%w: shm driver", diaspora.ErrClosed)
	}
	p := diaspora.NewGoroutinePool(count)
	d.pools = append(d.pools, p)
	return p, nil
}

// Close closes every producer and consumer made through the driver (flushing
// producers), stops the archivers after they archived what is committed,
// unmaps the rings and stops the pools.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	topics := d.topics
	d.topics = nil
	pools := d.pools
	d.mu.Unlock()
	var errs []error
	for _, t := range topics {
		errs = append(errs, t.close())
	}
	for _, p := range pools {
		errs = append(errs, p.Close())
	}
	errs = append(errs, d.pool.Close())
	return errors.Join(errs...)
}

func (d *Driver) checkOpen() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("%w: shm driver", diaspora.ErrClosed)
	}
	return nil
}
