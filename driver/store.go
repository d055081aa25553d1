package driver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// The durable layout under root_path:
//
//	<root>/topics/<topic>/topic.json           the topic's config (topicConfig)
//	<root>/topics/<topic>/complete             present once MarkAsComplete ran
//	<root>/topics/<topic>/partitions/<p>/      the partition's segment log, LOCK, positions/
const (
	topicsDir     = "topics"
	topicConfig   = "topic.json"
	completeFile  = "complete"
	partitionsDir = "partitions"
)

// topicConfigFile is the content of topic.json.
type topicConfigFile struct {
	Name              string          `json:"name"`
	ID                string          `json:"id"`
	Created           time.Time       `json:"created"`
	Options           json.RawMessage `json:"options"`
	Validator         json.RawMessage `json:"validator"`
	Serializer        json.RawMessage `json:"serializer"`
	PartitionSelector json.RawMessage `json:"partition_selector"`
}

func topicDir(root, name string) string { return filepath.Join(root, topicsDir, name) }

func partitionDir(root, name string, p int) string {
	return filepath.Join(topicDir(root, name), partitionsDir, strconv.Itoa(p))
}

// createTopicFiles makes the topic's directory atomically: everything is
// written under a temporary directory, then renamed into place. rename(2)
// of a directory onto a non-empty one fails, so of two processes racing to
// create a topic exactly one wins.
func createTopicFiles(root, name string, opts topicOptions, v, s, ps diaspora.Metadata) error {
	parent := filepath.Join(root, topicsDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("shm driver: create root %s: %w", parent, err)
	}
	if err := shareParents(root, opts.Mode); err != nil {
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	final := topicDir(root, name)
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("%w: topic %q in %s", diaspora.ErrTopicExists, name, root)
	}
	tmp, err := os.MkdirTemp(parent, ".creating-")
	if err != nil {
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	dirMode := topicDirMode(opts.Mode)
	if err := os.Chmod(tmp, dirMode); err != nil {
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	if err := mkdirMode(filepath.Join(tmp, partitionsDir), dirMode); err != nil {
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	for p := 0; p < opts.NumPartitions; p++ {
		if err := mkdirMode(filepath.Join(tmp, partitionsDir, strconv.Itoa(p)), dirMode); err != nil {
			return fmt.Errorf("shm driver: create topic %q partition %d: %w", name, p, err)
		}
	}
	optText, err := json.Marshal(opts.metadata())
	if err != nil {
		return err
	}
	cfg := topicConfigFile{
		Name: name, ID: newTopicID(), Created: time.Now().UTC(), Options: optText,
		Validator: v.Bytes(), Serializer: s.Bytes(), PartitionSelector: ps.Bytes(),
	}
	text, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, topicConfig), text, opts.Mode); err != nil {
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return fmt.Errorf("%w: topic %q in %s", diaspora.ErrTopicExists, name, root)
		}
		return fmt.Errorf("shm driver: create topic %q: %w", name, err)
	}
	return syncDir(parent)
}

// topicDirMode gives directories the access the topic's file mode gives
// files, plus search permission where reading is allowed. A topic shared
// with a group gets setgid directories, so that the files any member
// creates in them (log segments, positions, locks) belong to the group.
func topicDirMode(mode os.FileMode) os.FileMode {
	d := os.FileMode(0o700)
	for _, shift := range []uint{3, 0} {
		if mode&(0o4<<shift) != 0 {
			d |= 0o5 << shift
		}
		if mode&(0o2<<shift) != 0 {
			d |= 0o2 << shift
		}
	}
	if mode&0o060 != 0 {
		d |= os.ModeSetgid
	}
	return d
}

// shareParents lets those the topic's mode shares it with reach it: the
// topics directory gets their read and search bits, the root their search
// bit, each only ever widened and only when this user owns it (the driver
// creates both 0700).
func shareParents(root string, mode os.FileMode) error {
	want := topicDirMode(mode).Perm() &^ 0o700 &^ 0o022
	if want == 0 {
		return nil
	}
	for _, d := range []struct {
		path string
		bits os.FileMode
	}{{filepath.Join(root, topicsDir), want}, {root, want & 0o011}} {
		st, err := os.Stat(d.path)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&d.bits == d.bits {
			continue
		}
		if err := os.Chmod(d.path, st.Mode().Perm()|d.bits|st.Mode()&os.ModeSetgid); err != nil {
			return err
		}
	}
	return nil
}

// topicOwner is who a topic belongs to: the owner and group of its
// topic.json. Rings of the topic must belong to them (or to the caller).
type topicOwner struct {
	UID, GID uint32
}

// mkdirMode makes dir with exactly mode, whatever the umask.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, mode)
}

func newTopicID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// readTopicConfig loads and checks topic.json.
func readTopicConfig(root, name string) (topicConfigFile, topicOptions, error) {
	cfg, opts, _, err := readTopicConfigOwner(root, name)
	return cfg, opts, err
}

// readTopicConfigOwner is readTopicConfig that also says who owns the topic.
func readTopicConfigOwner(root, name string) (cfg topicConfigFile, _ topicOptions, own topicOwner, _ error) {
	path := filepath.Join(topicDir(root, name), topicConfig)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, topicOptions{}, own, fmt.Errorf("%w: topic %q in %s", diaspora.ErrTopicNotFound, name, root)
	}
	if err != nil {
		return cfg, topicOptions{}, own, fmt.Errorf("shm driver: open topic %q: %w", name, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			own = topicOwner{UID: sys.Uid, GID: sys.Gid}
		}
	}
	text, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return cfg, topicOptions{}, own, fmt.Errorf("shm driver: open topic %q: %w", name, err)
	}
	cfg, opts, err := parseTopicConfig(path, name, text)
	return cfg, opts, own, err
}

// parseTopicConfig checks the text of topic.json.
func parseTopicConfig(path, name string, text []byte) (topicConfigFile, topicOptions, error) {
	var cfg topicConfigFile
	if err := json.Unmarshal(text, &cfg); err != nil {
		return cfg, topicOptions{}, fmt.Errorf("shm driver: topic %q: %s is damaged: %v", name, path, err)
	}
	if cfg.Name != name || len(cfg.ID) != 16 {
		return cfg, topicOptions{}, fmt.Errorf("shm driver: topic %q: %s names topic %q with id %q", name, path, cfg.Name, cfg.ID)
	}
	md, err := diaspora.MetadataFromBytes(cfg.Options)
	if err != nil {
		return cfg, topicOptions{}, fmt.Errorf("shm driver: topic %q: %s: options: %w", name, path, err)
	}
	opts, err := parseTopicOptions(md)
	if err != nil {
		return cfg, topicOptions{}, fmt.Errorf("shm driver: topic %q: %s: %w", name, path, err)
	}
	return cfg, opts, nil
}

// listTopicNames returns the topics under root, sorted.
func listTopicNames(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, topicsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shm driver: list topics in %s: %w", root, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && validTopicName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(root, topicsDir, e.Name(), topicConfig)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// writeFileSync writes a small file durably: write, fsync, close.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil { // exactly mode, whatever the umask
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
