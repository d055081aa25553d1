package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/internal/topicplugins"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

// topicState is an open topic: its config, plug-ins rebuilt from the
// registries, and this process's partitions. It is the TopicHandleInterface.
type topicState struct {
	d     *Driver
	name  string
	cfg   topicConfigFile
	id    uint64 // cfg.ID as a number, recorded in each ring
	opts  topicOptions
	owner topicOwner
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
	cfg, opts, owner, err := readTopicConfigOwner(d.opts.RootPath, name)
	if err != nil {
		return nil, err
	}
	t := &topicState{d: d, name: name, cfg: cfg, opts: opts, owner: owner, clients: map[closer]struct{}{}}
	if t.id, err = strconv.ParseUint(cfg.ID, 16, 64); err != nil {
		return nil, fmt.Errorf("shm driver: topic %q: id %q is not 16 hex digits", name, cfg.ID)
	}
	plugins, err := topicplugins.Build(name, metadataOrEmpty(cfg.Validator), metadataOrEmpty(cfg.PartitionSelector),
		metadataOrEmpty(cfg.Serializer), opts.NumPartitions)
	if err != nil {
		return nil, err
	}
	t.validator, t.selector, t.serializer, t.infos = plugins.Validator, plugins.Selector, plugins.Serializer, plugins.Infos
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

// ringTrust says which ring files in the shared shm directory are this
// topic's: owned by its owner (or by us), or of its group when its mode
// shares it with one, and no wider than its mode.
func ringTrust(opts topicOptions, owner topicOwner) shm.Trust {
	tr := shm.Trust{Owners: []uint32{owner.UID}, Perm: opts.Mode}
	if opts.Mode&0o060 != 0 {
		tr.Groups = []uint32{owner.GID}
	}
	return tr
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

func (t *topicState) Name() string { return t.name }

// Incarnation names this creation of the topic: a topic deleted and made
// again under its name has another (the forwarder tells them apart).
func (t *topicState) Incarnation() string              { return strconv.FormatUint(t.id, 16) }
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
func (t *topicState) MarkAsComplete() (err error) {
	// The rings are unmapped once the topic is closed: hold t.mu so that
	// close cannot run meanwhile.
	t.mu.Lock()
	defer t.mu.Unlock()
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, stringer(fmt.Sprintf("topic %q", t.name)))
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
// set it refuses while a live process (producer, consumer or archiver) is
// attached to one of its rings. Each ring is marked deleted before its file
// is removed, so processes still using it get an error from their next
// push, pull or wait instead of streaming into a file nobody opens again.
func DeleteTopic(d *Driver, name string, force bool) error {
	if err := validTopicName(name); err != nil {
		return err
	}
	cfg, opts, owner, err := readTopicConfigOwner(d.opts.RootPath, name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	_, open := d.topics[name]
	d.mu.Unlock()
	if open {
		return fmt.Errorf("%w: topic %q is open in this process", diaspora.ErrInvalidArgument, name)
	}
	trust := ringTrust(opts, owner)
	var rings []string
	for p := 0; p < opts.NumPartitions; p++ {
		ringName := ringFileName(d.opts.RootPath, cfg.ID, p)
		rings = append(rings, ringName)
		if !force {
			if users, err := liveRingUsers(filepath.Join(d.opts.ShmPath, ringName), trust); err != nil {
				return err
			} else if len(users) > 0 {
				return fmt.Errorf("%w: topic %q partition %d is in use by %v (use force to delete anyway)", diaspora.ErrInvalidArgument, name, p, users)
			}
		}
	}
	for _, rn := range rings {
		markRingDeleted(d.opts.ShmPath, rn, trust)
		os.Remove(filepath.Join(d.opts.ShmPath, rn))
		os.Remove(filepath.Join(d.opts.ShmPath, ringInfoName(rn)))
	}
	return os.RemoveAll(topicDir(d.opts.RootPath, name))
}

// markRingDeleted sets the deleted flag of a ring that is the topic's; a
// damaged or missing one has nobody to tell.
func markRingDeleted(shmPath, name string, trust shm.Trust) {
	r, err := ring.Open(shmPath, name, trust)
	if err != nil {
		return
	}
	defer r.Close()
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			faultError(r, stringer(name)) // truncated meanwhile: nobody left to tell
		}
	}()
	r.MarkDeleted()
}
