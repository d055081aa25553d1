package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/shm"
)

// RingFile is one ring found under a shm path, with what its sidecar says
// it belongs to and, when it could be opened, its header.
type RingFile struct {
	Name  string      `json:"name"`
	Path  string      `json:"path"`
	Info  *RingInfo   `json:"info,omitempty"`
	Stats *ring.Stats `json:"stats,omitempty"`
	Err   string      `json:"error,omitempty"`
	// Owner is who owns the ring file, and its mode.
	Owner *shm.FileOwner `json:"owner,omitempty"`
	// RootGone is true when the root path the ring belongs to no longer
	// holds its topic (deleted, or another incarnation of the name).
	RootGone bool `json:"root_gone"`
	// RootErr says why it is unknown whether the root still holds the
	// topic: its config could not be read for another reason than ENOENT
	// (EACCES, EIO, damage). RootGone is false then.
	RootErr string `json:"root_error,omitempty"`
}

// LiveUsers lists the live processes attached to the ring (readers and the
// archiver), as "pid N (name)".
func (f RingFile) LiveUsers() []string {
	if f.Stats == nil {
		return nil
	}
	return liveUsers(*f.Stats)
}

func liveUsers(st ring.Stats) []string {
	var users []string
	for _, s := range st.Slots {
		if s.Alive {
			kind := "reader"
			if s.Producer {
				kind = "producer"
			}
			users = append(users, fmt.Sprintf("pid %d (%s %q)", s.Process.PID, kind, s.Name))
		}
	}
	if st.Archiver.PID != 0 && st.Archiver.Alive() {
		users = append(users, fmt.Sprintf("pid %d (archiver)", st.Archiver.PID))
	}
	return users
}

// ListRings finds every ring file of this driver's kind under shmPath.
func ListRings(shmPath string) ([]RingFile, error) {
	entries, err := os.ReadDir(shmPath)
	if err != nil {
		return nil, fmt.Errorf("list rings in %s: %w", shmPath, err)
	}
	var out []RingFile
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "dshm.") || strings.HasSuffix(name, ".json") || strings.Contains(name, ".tmp-") {
			continue
		}
		out = append(out, InspectRing(shmPath, name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// InspectRing opens one ring read-only in spirit (it changes nothing) and
// reports its header and sidecar.
func InspectRing(shmPath, name string) (f RingFile) {
	f = RingFile{Name: name, Path: filepath.Join(shmPath, name)}
	// Inspection trusts nothing, so it opens any owner's ring: but it
	// believes a sidecar only when the ring's owner wrote it.
	r, ringErr := ring.Open(shmPath, name, shm.AnyOwner)
	if ringErr == nil {
		defer r.Close()
		own := r.Owner()
		f.Owner = &own
	} else if own, err := shm.OwnerOf(f.Path); err == nil {
		f.Owner = &own // damaged, but whose it is still tells whose sidecar counts
	}
	if text, sideOwner, err := shm.AnyOwner.ReadFile(filepath.Join(shmPath, ringInfoName(name)), 1<<16); err == nil &&
		f.Owner != nil && sideOwner.UID == f.Owner.UID {
		// The sidecar sits in a shared directory: trust it only when it
		// names a valid topic under an absolute root.
		var info RingInfo
		if json.Unmarshal(text, &info) == nil && validTopicName(info.Topic) == nil &&
			filepath.IsAbs(info.Root) && info.Partition >= 0 && len(info.TopicID) == 16 {
			f.Info = &info
			// Gone only on proof: no config (ENOENT), or one read whole that
			// names another topic ID. A config this process cannot read says
			// nothing either way.
			cfg, _, err := readTopicConfig(info.Root, info.Topic)
			switch {
			case errors.Is(err, diaspora.ErrTopicNotFound):
				f.RootGone = true
			case err != nil:
				f.RootErr = err.Error()
			default:
				f.RootGone = cfg.ID != info.TopicID
			}
		}
	}
	if ringErr != nil {
		f.Err = ringErr.Error()
		return f
	}
	defer debug.SetPanicOnFault(armFaults())
	defer func() {
		if r := recover(); r != nil {
			f.Stats, f.Err = nil, faultError(r, stringer(f.Path)).Error()
		}
	}()
	st := r.Stats()
	f.Stats = &st
	return f
}

// liveRingUsers lists the live processes attached to a ring file; a
// missing ring has none.
func liveRingUsers(path string, trust shm.Trust) (users []string, err error) {
	r, err := ring.Open(filepath.Dir(path), filepath.Base(path), trust)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, stringer(path))
	return liveUsers(r.Stats()), nil
}
