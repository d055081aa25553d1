package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/diaspora-shm/diaspora"
)

// validTopicName refuses names that are empty, too long, not UTF-8, or that
// could escape the root directory or break a ring file name.
func validTopicName(name string) error { return validName("topic", name) }

// validConsumerName applies the same rules to consumer and producer names,
// which become file names for stored positions; errors call the name by its
// kind ("consumer" or "producer").
func validConsumerName(kind, name string) error { return validName(kind, name) }

// validName checks a name of the given kind ("topic", "consumer", ...).
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s name is empty", diaspora.ErrInvalidArgument, kind)
	case len(name) > maxTopicNameLen:
		return fmt.Errorf("%w: %s name is %d bytes long, the limit is %d", diaspora.ErrInvalidArgument, kind, len(name), maxTopicNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name %q is not valid UTF-8", diaspora.ErrInvalidArgument, kind, name)
	case name == "." || name == ".." || strings.HasPrefix(name, "."):
		return fmt.Errorf("%w: %s name %q may not start with a dot", diaspora.ErrInvalidArgument, kind, name)
	}
	for _, r := range name {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s name %q contains %q, which is not allowed", diaspora.ErrInvalidArgument, kind, name, r)
		}
	}
	return nil
}

// rootTag is a short digest of the root path, so that rings of two roots
// never share a file under the shm path.
func rootTag(root string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(root)))
	return hex.EncodeToString(sum[:6])
}

// ringFileName names the ring of one partition of one incarnation of a topic:
// dshm.<root tag>.<topic id>.<partition>. The topic id changes when a topic is
// deleted and created again, so a stale ring is never reused.
func ringFileName(root, topicID string, partition int) string {
	return "dshm." + rootTag(root) + "." + topicID + "." + strconv.Itoa(partition)
}

// ringInfoName is the sidecar that says which root, topic and partition a
// ring file belongs to, for diaspora-shmctl.
func ringInfoName(ringName string) string { return ringName + ".json" }

// RingInfo is what the sidecar file beside each ring records.
type RingInfo struct {
	Root      string `json:"root"`
	Topic     string `json:"topic"`
	TopicID   string `json:"topic_id"`
	Partition int    `json:"partition"`
}
