package driver

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
)

// lockConsumerName takes the ring's lock of the consumer's name, held as
// long as the consumer is attached: one name is one cursor, so a second
// live consumer of the name on the partition, in this process or another,
// is refused (two would each receive every event). The lock lives in the
// ring file (an open file description lock), so it needs nothing written
// under the root, which may be read-only; the kernel drops it when its
// holder dies.
func lockConsumerName(part *partition, name string) (io.Closer, error) {
	l, err := part.ring.LockName(name)
	if errors.Is(err, ring.ErrNameInUse) {
		return nil, fmt.Errorf("%w: consumer %q of %s: the name is in use by %s; one name is one cursor (each event goes to one consumer of a name), so use another name, or other Targets, for a second consumer",
			diaspora.ErrInvalidArgument, name, part, nameHolders(part, name))
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %q of %s: lock the name: %w", name, part, err)
	}
	return l, nil
}

// nameHolders says which live processes have a reader of the name
// attached to the partition's ring.
func nameHolders(part *partition, name string) string {
	var who []string
	short := name[:min(len(name), ring.SlotNameLen-1)] // slots keep a prefix
	for _, s := range part.ring.Stats().Slots {
		if !s.Producer && s.Alive && s.Name == short {
			who = append(who, fmt.Sprintf("pid %d", s.Process.PID))
		}
	}
	if len(who) == 0 {
		return "another consumer that is attaching or detaching"
	}
	return "a consumer in " + strings.Join(who, ", ")
}
