package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/diaspora-shm/diaspora"
)

// topicState is an open topic: its config, plug-ins rebuilt from the
// registries, and this process's partitions. It is the TopicHandleInterface.
type topicState struct {
	d     *Driver
	name  string
	cfg   topicConfigFile
	opts  topicOptions
	infos []diaspora.PartitionInfo
	parts []*partition

	validator  diaspora.Validator
	selector   diaspora.PartitionSelector
	serializer diaspora.Serializer

	mu      sync.Mutex
	clients map[closer]struct{} // producers and consumers, closed with the topic
	closed  bool
}

type closer interface{ Close() error }

func openTopicState(d *Driver, name string) (*topicState, error) {
	cfg, opts, err := readTopicConfig(d.opts.RootPath, name)
	if err != nil {
		return nil, err
	}
	t := &topicState{d: d, name: name, cfg: cfg, opts: opts, clients: map[closer]struct{}{}}
	if t.validator, err = diaspora.ValidatorFromMetadata(metadataOrEmpty(cfg.Validator)); err != nil {
		return nil, fmt.Errorf("topic %q: validator: %w", name, err)
	}
	if t.selector, err = diaspora.PartitionSelectorFromMetadata(metadataOrEmpty(cfg.PartitionSelector)); err != nil {
		return nil, fmt.Errorf("topic %q: partition selector: %w", name, err)
	}
	if t.serializer, err = diaspora.SerializerFromMetadata(metadataOrEmpty(cfg.Serializer)); err != nil {
		return nil, fmt.Errorf("topic %q: serializer: %w", name, err)
	}
	for p := 0; p < opts.NumPartitions; p++ {
		md, err := diaspora.MetadataOf(map[string]any{"id": p, "topic": name})
		if err != nil {
			return nil, err
		}
		t.infos = append(t.infos, diaspora.PartitionInfo{Metadata: md})
	}
	if err := t.selector.SetPartitions(t.infos); err != nil {
		return nil, fmt.Errorf("topic %q: partition selector: %w", name, err)
	}
	for p := 0; p < opts.NumPartitions; p++ {
		part, err := openPartition(t, p)
		if err != nil {
			for _, q := range t.parts {
				q.close()
			}
			return nil, err
		}
		t.parts = append(t.parts, part)
	}
	return t, nil
}

func metadataOrEmpty(b []byte) diaspora.Metadata {
	if len(b) == 0 {
		return diaspora.Metadata{}
	}
	md, err := diaspora.MetadataFromBytes(b)
	if err != nil {
		return diaspora.Metadata{}
	}
	return md
}

func (t *topicState) Name() string                     { return t.name }
func (t *topicState) Driver() diaspora.DriverInterface { return t.d }
func (t *topicState) Partitions() []diaspora.PartitionInfo {
	return append([]diaspora.PartitionInfo(nil), t.infos...)
}
func (t *topicState) Validator() diaspora.ValidatorInterface   { return t.validator }
func (t *topicState) Serializer() diaspora.SerializerInterface { return t.serializer }
func (t *topicState) PartitionSelector() diaspora.PartitionSelectorInterface {
	return t.selector
}

// MarkAsComplete ends the stream: it is recorded durably in the topic's
// directory and flagged in every ring, waking every sleeping consumer.
func (t *topicState) MarkAsComplete() error {
	// The rings are unmapped once the topic is closed: hold t.mu so that
	// close cannot run meanwhile.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("%w: topic %q", diaspora.ErrClosed, t.name)
	}
	path := filepath.Join(topicDir(t.d.opts.RootPath, t.name), completeFile)
	if err := writeFileSync(path, nil, t.opts.Mode); err != nil {
		return fmt.Errorf("shm driver: topic %q: mark as complete: %w", t.name, err)
	}
	for _, p := range t.parts {
		p.ring.MarkComplete()
	}
	return nil
}

func (t *topicState) addClient(c closer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("%w: topic %q", diaspora.ErrClosed, t.name)
	}
	t.clients[c] = struct{}{}
	return nil
}

func (t *topicState) removeClient(c closer) {
	t.mu.Lock()
	delete(t.clients, c)
	t.mu.Unlock()
}

// close closes the topic's producers and consumers, then its partitions.
func (t *topicState) close() error {
	t.mu.Lock()
	t.closed = true
	clients := make([]closer, 0, len(t.clients))
	for c := range t.clients {
		clients = append(clients, c)
	}
	t.mu.Unlock()
	var errs []error
	for _, c := range clients {
		if err := c.Close(); err != nil && !errors.Is(err, diaspora.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, p := range t.parts {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// DeleteTopic removes a topic's directory and its rings. Unless force is
// set it refuses while a live process is attached to one of its rings.
func DeleteTopic(d *Driver, name string, force bool) error {
	if err := validTopicName(name); err != nil {
		return err
	}
	cfg, opts, err := readTopicConfig(d.opts.RootPath, name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	_, open := d.topics[name]
	d.mu.Unlock()
	if open {
		return fmt.Errorf("%w: topic %q is open in this process", diaspora.ErrInvalidArgument, name)
	}
	var rings []string
	for p := 0; p < opts.NumPartitions; p++ {
		ringName := ringFileName(d.opts.RootPath, cfg.ID, p)
		rings = append(rings, ringName)
		if !force {
			if users, err := liveRingUsers(filepath.Join(d.opts.ShmPath, ringName)); err != nil {
				return err
			} else if len(users) > 0 {
				return fmt.Errorf("%w: topic %q partition %d is in use by %v (use force to delete anyway)", diaspora.ErrInvalidArgument, name, p, users)
			}
		}
	}
	for _, r := range rings {
		os.Remove(filepath.Join(d.opts.ShmPath, r))
		os.Remove(filepath.Join(d.opts.ShmPath, ringInfoName(r)))
	}
	return os.RemoveAll(topicDir(d.opts.RootPath, name))
}
