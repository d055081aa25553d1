package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
	"github.com/diaspora-shm/diaspora/ring"
)

func (a *app) newRingCmd() *cobra.Command {
	cmd := groupCmd("ring", "Show and clean the rings in shared memory",
		`Each partition of an open topic has a ring file under the shm path
(dshm.<root hash>.<topic id>.<partition>, with a <name>.json sidecar saying
which root, topic and partition it belongs to). These commands show the rings,
the processes attached to them, and remove rings left behind.`,
		`  diaspora-shmctl ring ls
  diaspora-shmctl ring inspect sim/0
  diaspora-shmctl ring clean --dry-run`)
	cmd.AddCommand(a.newRingLsCmd(), a.newRingInspectCmd(), a.newRingCleanCmd())
	return cmd
}

// procView is one process attached to a ring.
type procView struct {
	PID   uint32 `json:"pid"`
	Role  string `json:"role"` // "reader" or "archiver"
	Name  string `json:"name,omitempty"`
	Alive bool   `json:"alive"`
}

func (p procView) String() string {
	state := "dead"
	if p.Alive {
		state = "alive"
	}
	if p.Role == "archiver" {
		return fmt.Sprintf("pid %d archiver %s", p.PID, state)
	}
	return fmt.Sprintf("pid %d reader %q %s", p.PID, p.Name, state)
}

// ringView is what ring ls shows of one ring.
type ringView struct {
	Name        string     `json:"name"`
	Path        string     `json:"path"`
	Root        string     `json:"root,omitempty"`
	Topic       string     `json:"topic,omitempty"`
	Partition   *int       `json:"partition,omitempty"`
	RootGone    bool       `json:"root_gone"`
	RootError   string     `json:"root_error,omitempty"` // why it is unknown whether the root holds the topic
	Capacity    int        `json:"capacity"`
	Fill        uint64     `json:"fill"`
	TailPos     uint64     `json:"tail_pos"`
	NextID      uint64     `json:"next_id"`
	ArchivedPos uint64     `json:"archived_pos"`
	Durable     bool       `json:"durable"`
	Complete    bool       `json:"complete"`
	Processes   []procView `json:"processes"`
	Error       string     `json:"error,omitempty"`
}

func viewRing(f driver.RingFile) ringView {
	v := ringView{Name: f.Name, Path: f.Path, RootGone: f.RootGone, RootError: f.RootErr, Error: f.Err, Processes: []procView{}}
	if f.Info != nil {
		v.Root, v.Topic = f.Info.Root, f.Info.Topic
		p := f.Info.Partition
		v.Partition = &p
	}
	if st := f.Stats; st != nil {
		v.Capacity, v.TailPos, v.NextID, v.ArchivedPos = st.Capacity, st.TailPos, st.TailID, st.ArchivedPos
		v.Durable, v.Complete = st.Durable, st.Complete
		v.Fill = sub(st.TailPos, st.HeadCache)
		v.Processes = processes(*st)
	}
	return v
}

func processes(st ring.Stats) []procView {
	out := []procView{}
	for _, s := range st.Slots {
		role := "reader"
		if s.Producer {
			role = "producer"
		}
		out = append(out, procView{PID: s.Process.PID, Role: role, Name: s.Name, Alive: s.Alive})
	}
	if st.Archiver.PID != 0 {
		out = append(out, procView{PID: st.Archiver.PID, Role: "archiver", Alive: st.Archiver.Alive()})
	}
	return out
}

// sub is a - b, or 0 when b is ahead (a snapshot is not atomic).
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// humanBytes renders a byte count with a binary unit.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + string("KMGTP"[exp]) + "iB"
}

func (a *app) shmPath(what string) (*driver.Driver, error) {
	return a.openShm(what)
}

func (a *app) newRingLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the rings under the shm path",
		Long: `List every ring under the shm path, whatever root it belongs to: its topic
and partition, its size, its fill (bytes between the oldest pinned position and
the tail), the producer's tail position and next event ID, the archived
position, and the processes attached (readers and archiver), each marked alive
or dead. A ring that cannot be opened is listed with its error; ring ls
still exits with status 0 (ring inspect does not). A ring whose root no longer holds its topic is marked "root gone"
(its topic config is missing, or names another topic id); one whose topic
config cannot be read (permissions, I/O error, damage) is marked "root
unknown", and a note after the table says why.`,
		Example: `  diaspora-shmctl ring ls
  diaspora-shmctl --shm /dev/shm ring ls --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.shmPath("ring ls")
			if err != nil {
				return err
			}
			defer d.Close()
			rings, err := driver.ListRings(d.ShmPath())
			if err != nil {
				return err
			}
			views := make([]ringView, 0, len(rings))
			for _, r := range rings {
				views = append(views, viewRing(r))
			}
			if a.jsonOut {
				return a.printJSON(views)
			}
			if err := printRingTable(a.stdout, views); err != nil {
				return err
			}
			for _, v := range views {
				if v.RootError != "" {
					fmt.Fprintf(a.stdout, "note: %s: root unknown: %s\n", v.Name, oneLine(v.RootError))
				}
			}
			return nil
		},
	}
}

func printRingTable(w io.Writer, views []ringView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RING\tTOPIC\tPART\tSIZE\tFILL\tTAIL\tNEXT_ID\tARCHIVED\tPROCESSES")
	for _, v := range views {
		topic, part := "?", "?"
		if v.Partition != nil {
			topic, part = v.Topic, strconv.Itoa(*v.Partition)
		}
		if v.RootGone {
			topic += " (root gone)"
		} else if v.RootError != "" {
			topic += " (root unknown)"
		}
		if v.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\terror: %s\n", v.Name, topic, part, oneLine(v.Error))
			continue
		}
		procs := make([]string, 0, len(v.Processes))
		for _, p := range v.Processes {
			procs = append(procs, p.String())
		}
		ps := strings.Join(procs, ", ")
		if ps == "" {
			ps = "-"
		}
		fill := humanBytes(v.Fill)
		if v.Capacity > 0 {
			fill += fmt.Sprintf(" (%d%%)", v.Fill*100/uint64(v.Capacity))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", v.Name, topic, part,
			humanBytes(uint64(v.Capacity)), fill, v.TailPos, v.NextID, v.ArchivedPos, ps)
	}
	return tw.Flush()
}

// slotView is one reader slot in ring inspect.
type slotView struct {
	Slot       int       `json:"slot"`
	Name       string    `json:"name"`
	PID        uint32    `json:"pid"`
	Alive      bool      `json:"alive"`
	ReadPos    uint64    `json:"read_pos"`
	ReleasePos uint64    `json:"release_pos"`
	Lag        uint64    `json:"lag"`
	Pinned     uint64    `json:"pinned"`
	Attached   time.Time `json:"attached"`
}

// inspectView is what ring inspect shows of one ring.
type inspectView struct {
	ringView
	Version          int        `json:"version"`
	FirstID          uint64     `json:"first_id"`
	HeadCache        uint64     `json:"head_cache"`
	OldestUnreleased *uint64    `json:"oldest_unreleased,omitempty"`
	OldestReader     string     `json:"oldest_reader,omitempty"`
	ArchiverPID      uint32     `json:"archiver_pid"`
	ArchiverAlive    bool       `json:"archiver_alive"`
	Deleted          bool       `json:"deleted"`
	Owner            string     `json:"owner,omitempty"`
	Readers          []slotView `json:"readers"`
	Producers        []slotView `json:"producers"`
}

func inspectRing(f driver.RingFile) inspectView {
	v := inspectView{ringView: viewRing(f), Readers: []slotView{}, Producers: []slotView{}}
	if f.Owner != nil {
		v.Owner = fmt.Sprintf("uid %d, group %d, mode %04o", f.Owner.UID, f.Owner.GID, uint32(f.Owner.Perm))
	}
	st := f.Stats
	if st == nil {
		return v
	}
	v.Version, v.FirstID, v.HeadCache, v.Deleted = st.Version, st.FirstID, st.HeadCache, st.Deleted
	v.ArchiverPID, v.ArchiverAlive = st.Archiver.PID, st.Archiver.PID != 0 && st.Archiver.Alive()
	for _, s := range st.Slots {
		if s.Producer {
			// A producer's presence: it pins no space.
			v.Producers = append(v.Producers, slotView{Slot: s.Index, Name: s.Name, PID: s.Process.PID, Alive: s.Alive, Attached: s.Attached})
			continue
		}
		v.Readers = append(v.Readers, slotView{
			Slot: s.Index, Name: s.Name, PID: s.Process.PID, Alive: s.Alive,
			ReadPos: s.ReadPos, ReleasePos: s.ReleasePos,
			Lag: sub(st.TailPos, s.ReadPos), Pinned: sub(st.TailPos, s.ReleasePos),
			Attached: s.Attached,
		})
		if s.Alive && (v.OldestUnreleased == nil || s.ReleasePos < *v.OldestUnreleased) {
			pos := s.ReleasePos
			v.OldestUnreleased = &pos
			v.OldestReader = s.Name
		}
	}
	return v
}

func printInspect(w io.Writer, v inspectView) error {
	fmt.Fprintf(w, "ring %s\n", v.Path)
	if v.Partition != nil {
		gone := ""
		if v.RootGone {
			gone = " (root gone)"
		} else if v.RootError != "" {
			gone = " (root unknown: " + oneLine(v.RootError) + ")"
		}
		fmt.Fprintf(w, "  topic:             %s partition %d, root %s%s\n", v.Topic, *v.Partition, v.Root, gone)
	} else {
		fmt.Fprintf(w, "  topic:             unknown (no sidecar)\n")
	}
	if v.Error != "" {
		fmt.Fprintf(w, "  error:             %s\n", oneLine(v.Error))
		return nil
	}
	if v.Owner != "" {
		fmt.Fprintf(w, "  owner:             %s\n", v.Owner)
	}
	fmt.Fprintf(w, "  version:           %d\n", v.Version)
	if v.Deleted {
		fmt.Fprintf(w, "  deleted:           true (its topic was deleted; its users get errors)\n")
	}
	fmt.Fprintf(w, "  capacity:          %d (%s)\n", v.Capacity, humanBytes(uint64(v.Capacity)))
	fmt.Fprintf(w, "  durable:           %t\n", v.Durable)
	fmt.Fprintf(w, "  complete:          %t\n", v.Complete)
	fmt.Fprintf(w, "  first id:          %d\n", v.FirstID)
	fmt.Fprintf(w, "  next id:           %d\n", v.NextID)
	fmt.Fprintf(w, "  tail position:     %d\n", v.TailPos)
	fmt.Fprintf(w, "  head cache:        %d\n", v.HeadCache)
	fmt.Fprintf(w, "  archived position: %d (%s behind the tail)\n", v.ArchivedPos, humanBytes(sub(v.TailPos, v.ArchivedPos)))
	fmt.Fprintf(w, "  fill:              %s\n", humanBytes(v.Fill))
	if v.OldestUnreleased != nil {
		fmt.Fprintf(w, "  oldest unreleased: %d (reader %q, %s behind the tail)\n", *v.OldestUnreleased, v.OldestReader,
			humanBytes(sub(v.TailPos, *v.OldestUnreleased)))
	} else {
		fmt.Fprintf(w, "  oldest unreleased: none (no live reader)\n")
	}
	switch {
	case v.ArchiverPID == 0:
		fmt.Fprintf(w, "  archiver:          none\n")
	case v.ArchiverAlive:
		fmt.Fprintf(w, "  archiver:          pid %d (alive)\n", v.ArchiverPID)
	default:
		fmt.Fprintf(w, "  archiver:          pid %d (dead)\n", v.ArchiverPID)
	}
	if len(v.Producers) == 0 {
		fmt.Fprintf(w, "  producers:         none\n")
	} else {
		fmt.Fprintf(w, "  producers:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "    SLOT\tNAME\tPID\tSTATE\tATTACHED")
		for _, r := range v.Producers {
			fmt.Fprintf(tw, "    %d\t%s\t%d\t%s\t%s\n", r.Slot, r.Name, r.PID, aliveWord(r.Alive), r.Attached.Format(time.RFC3339))
		}
		tw.Flush()
	}
	if len(v.Readers) == 0 {
		fmt.Fprintf(w, "  readers:           none\n")
		return nil
	}
	fmt.Fprintf(w, "  readers:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    SLOT\tNAME\tPID\tSTATE\tREAD_POS\tRELEASE_POS\tLAG\tPINNED\tATTACHED")
	for _, r := range v.Readers {
		fmt.Fprintf(tw, "    %d\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Slot, r.Name, r.PID, aliveWord(r.Alive), r.ReadPos, r.ReleasePos,
			humanBytes(r.Lag), humanBytes(r.Pinned), r.Attached.Format(time.RFC3339))
	}
	return tw.Flush()
}

func aliveWord(alive bool) string {
	if alive {
		return "alive"
	}
	return "dead"
}

// findRings resolves TOPIC, TOPIC/PARTITION or a ring file name to rings.
func (a *app) findRings(d *driver.Driver, arg string) ([]driver.RingFile, error) {
	if strings.HasPrefix(arg, "dshm.") {
		if _, err := os.Stat(filepath.Join(d.ShmPath(), arg)); err != nil {
			return nil, fmt.Errorf("ring %q: %w", arg, err)
		}
		return []driver.RingFile{driver.InspectRing(d.ShmPath(), arg)}, nil
	}
	topic, partText, hasPart := strings.Cut(arg, "/")
	part := -1
	if hasPart {
		p, err := strconv.Atoi(partText)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%q: the partition after the slash must be a number >= 0", arg)
		}
		part = p
	}
	if _, err := driver.TopicInfo(d.RootPath(), topic); err != nil {
		return nil, err
	}
	rings, err := driver.ListRings(d.ShmPath())
	if err != nil {
		return nil, err
	}
	var out []driver.RingFile
	for _, r := range rings {
		if r.Info == nil || r.Info.Topic != topic || filepath.Clean(r.Info.Root) != filepath.Clean(d.RootPath()) || r.RootGone {
			continue
		}
		if part >= 0 && r.Info.Partition != part {
			continue
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		if part >= 0 {
			return nil, fmt.Errorf("topic %q partition %d has no ring in %s (no process has opened it since its ring was removed, or the partition does not exist)", topic, part, d.ShmPath())
		}
		return nil, fmt.Errorf("topic %q has no ring in %s (no process has opened it since its rings were removed)", topic, d.ShmPath())
	}
	return out, nil
}

func (a *app) newRingInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect TOPIC[/PARTITION] | RING",
		Short: "Show a ring's header and reader slots",
		Long: `Show the header of a topic's rings (all partitions, or the one after the
slash), or of a ring file named as in "ring ls": version, capacity, positions,
the archiver's pid, and every reader slot with its lag (tail - read position)
and the bytes it pins (tail - release position), and the oldest position a
live reader has not released.

A ring that cannot be read (damaged, or not readable by this user) is shown
with its error, and the exit status is not zero.`,
		Example: `  diaspora-shmctl ring inspect sim
  diaspora-shmctl ring inspect sim/1
  diaspora-shmctl ring inspect dshm.3f2a9c01b7de.8e1f00aa42c1d3b9.0 --json`,
		Args: exactArgs(1, "TOPIC[/PARTITION] or a ring name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.shmPath("ring inspect")
			if err != nil {
				return err
			}
			defer d.Close()
			rings, err := a.findRings(d, args[0])
			if err != nil {
				return err
			}
			views := make([]inspectView, 0, len(rings))
			var bad []string
			for _, r := range rings {
				views = append(views, inspectRing(r))
				if r.Err != "" {
					bad = append(bad, r.Name+": "+oneLine(r.Err))
				}
			}
			if a.jsonOut {
				if err := a.printJSON(views); err != nil {
					return err
				}
			} else {
				for i, v := range views {
					if i > 0 {
						fmt.Fprintln(a.stdout)
					}
					if err := printInspect(a.stdout, v); err != nil {
						return err
					}
				}
			}
			switch {
			case len(bad) == 1 && len(views) == 1:
				return fmt.Errorf("ring inspect: cannot read ring %s", bad[0])
			case len(bad) > 0:
				return fmt.Errorf("ring inspect: cannot read %d of %d rings: %s", len(bad), len(views), strings.Join(bad, "; "))
			}
			return nil
		},
	}
}

// cleanAction is what ring clean did, or would do, with one ring.
type cleanAction struct {
	Ring      string `json:"ring"`
	Topic     string `json:"topic,omitempty"`
	Partition *int   `json:"partition,omitempty"`
	Root      string `json:"root,omitempty"`
	Action    string `json:"action"` // "remove", "removed", "skip", "error"
	Reason    string `json:"reason"`
	Archive   bool   `json:"archive"` // the log lacked events of the ring
	Bytes     uint64 `json:"unarchived_bytes,omitempty"`

	file driver.RingFile
}

func (c cleanAction) describe() string {
	what := c.Ring
	if c.Partition != nil {
		what += fmt.Sprintf(" (topic %s partition %d)", c.Topic, *c.Partition)
	}
	verb := map[string]string{"remove": "would remove", "removed": "removed", "skip": "kept", "error": "failed on"}[c.Action]
	return fmt.Sprintf("%s %s: %s", verb, what, c.Reason)
}

// minOrphanAge is how old a ring without a sidecar must be before clean
// removes it: a process may be creating it right now.
const minOrphanAge = time.Minute

// planClean decides, from one listing, what to do with each ring.
func planClean(rings []driver.RingFile, force bool, now time.Time) []cleanAction {
	var plan []cleanAction
	for _, r := range rings {
		c := cleanAction{Ring: r.Name, file: r, Action: "remove"}
		if r.Info != nil {
			c.Topic, c.Root = r.Info.Topic, r.Info.Root
			p := r.Info.Partition
			c.Partition = &p
		}
		var users []string
		if r.Stats != nil {
			users = r.LiveUsers()
		}
		switch {
		case r.Info == nil:
			// Without a sidecar nothing proves the ring's root is gone (its
			// writer may have been kept from writing one): it may hold the
			// only copy of its events.
			st, err := os.Stat(r.Path)
			if err == nil && now.Sub(st.ModTime()) < minOrphanAge && !force {
				c.Action, c.Reason = "skip", "no sidecar yet; it may be being created (--force removes it)"
			} else if len(users) > 0 {
				c.Action, c.Reason = "skip", "no sidecar, but in use by "+strings.Join(users, ", ")
			} else if !force {
				c.Action, c.Reason = "skip", "no sidecar says which topic it belongs to, so nothing proves it is orphaned (--force removes it)"
			} else {
				c.Reason = "no sidecar says which topic it belongs to: nothing to archive to; removed by --force"
			}
		case r.RootErr != "":
			// Only a proof that the root no longer holds the topic lets a
			// ring go without archiving: this may be the only copy of its
			// events, and another user may merely lack read access.
			c.Action, c.Reason = "skip", fmt.Sprintf("cannot tell whether root %s still holds this topic (%s); kept even with --force",
				r.Info.Root, oneLine(r.RootErr))
		case r.RootGone:
			c.Reason = fmt.Sprintf("root %s no longer holds this topic: nothing to archive to", r.Info.Root)
			if r.Stats != nil {
				if n := sub(r.Stats.TailPos, r.Stats.ArchivedPos); r.Stats.Durable && n > 0 {
					c.Reason += fmt.Sprintf("; %s not archived are dropped", humanBytes(n))
				}
			}
			if len(users) > 0 {
				c.Reason += "; still mapped by " + strings.Join(users, ", ")
			}
		case r.Stats == nil:
			if force {
				c.Reason = "cannot be opened (" + oneLine(r.Err) + "); removed by --force"
			} else {
				c.Action, c.Reason = "skip", "cannot be opened ("+oneLine(r.Err)+"); --force removes it"
			}
		case len(users) > 0:
			c.Action, c.Reason = "skip", "in use by "+strings.Join(users, ", ")
		case !r.Stats.Durable && r.Stats.TailPos > 0:
			if force {
				c.Reason = "no live process uses it; its events (durability none) are dropped by --force"
			} else {
				c.Action, c.Reason = "skip", "its topic is not durable, so the ring holds the only copy of its events (--force drops them)"
			}
		default:
			c.Reason = "no live process uses it"
			if n := sub(r.Stats.TailPos, r.Stats.ArchivedPos); r.Stats.Durable && n > 0 {
				c.Archive, c.Bytes = true, n
				c.Reason += fmt.Sprintf("; archives %s the log lacks first", humanBytes(n))
			} else {
				c.Reason += "; the log holds all it has"
			}
		}
		plan = append(plan, c)
	}
	return plan
}

type topicKey struct{ root, topic string }

// archiveTopic opens a topic and closes it again: closing archives every
// committed record of its rings into the log.
func archiveTopic(k topicKey, shmPath string) error {
	md, err := diaspora.MetadataOf(map[string]string{"root_path": k.root, "shm_path": shmPath})
	if err != nil {
		return err
	}
	d, err := diaspora.NewDriver(driver.Name, md)
	if err != nil {
		return err
	}
	if _, err := d.OpenTopic(k.topic); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

func removeRing(shmPath, name string) error {
	err := os.Remove(filepath.Join(shmPath, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	err = os.Remove(filepath.Join(shmPath, name+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (a *app) newRingCleanCmd() *cobra.Command {
	var dryRun, force bool
	cmd := &cobra.Command{
		Use:   "clean",
		Short: "Remove rings that no live process uses",
		Long: `Remove the rings under the shm path that no live process uses, or whose root
no longer holds their topic. Before a ring of a durable topic is removed, what
it holds that the log lacks is archived: the topic is opened and closed again,
which archives every committed record. Events stay consumable from the log.

A ring counts as belonging to a gone root only on proof: its topic's config
is missing (ENOENT on it, its topic directory or the root), or names another
topic id. When the config cannot be read for another reason (permissions, an
I/O error, damage), the ring is kept, even with --force, and the reason says
why.

Rings are kept when a live process is attached, when their topic is not
durable (durability "none": the ring holds the only copy) and when they cannot
be opened; --force removes the last two kinds too. --dry-run only lists what
would be done.`,
		Example: `  diaspora-shmctl ring clean --dry-run
  diaspora-shmctl ring clean
  diaspora-shmctl ring clean --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.shmPath("ring clean")
			if err != nil {
				return err
			}
			shmPath := d.ShmPath()
			d.Close()
			rings, err := driver.ListRings(shmPath)
			if err != nil {
				return err
			}
			plan := planClean(rings, force, time.Now())
			if !dryRun {
				plan = a.executeClean(plan, shmPath)
			}
			var failed int
			for _, c := range plan {
				if c.Action == "error" {
					failed++
				}
			}
			if a.jsonOut {
				if plan == nil {
					plan = []cleanAction{}
				}
				if err := a.printJSON(plan); err != nil {
					return err
				}
			} else {
				for _, c := range plan {
					fmt.Fprintln(a.stdout, c.describe())
				}
			}
			if failed > 0 {
				return fmt.Errorf("ring clean: %d of %d rings could not be cleaned (see above)", failed, len(plan))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be done, change nothing")
	cmd.Flags().BoolVar(&force, "force", false, "also remove rings that cannot be opened and rings of non-durable topics")
	return cmd
}

// executeClean archives then removes what the plan says.
func (a *app) executeClean(plan []cleanAction, shmPath string) []cleanAction {
	prog := a.newProgress("cleaning rings", len(plan))
	defer prog.done()
	// Archive once per topic: opening a topic maps all its partitions.
	archived := map[topicKey]error{}
	for i, c := range plan {
		prog.update(i)
		if c.Action != "remove" || !c.Archive {
			continue
		}
		k := topicKey{c.Root, c.Topic}
		if _, done := archived[k]; !done {
			archived[k] = archiveTopic(k, shmPath)
		}
	}
	known := map[string]bool{}
	for i := range plan {
		c := &plan[i]
		known[c.Ring] = true
		prog.update(i)
		if c.Action != "remove" {
			continue
		}
		if c.Archive {
			if err := archived[topicKey{c.Root, c.Topic}]; err != nil {
				c.Action, c.Reason = "error", "archiving first failed: "+oneLine(errorText(err))
				continue
			}
			// Check again: archived, and still nobody attached.
			now := driver.InspectRing(shmPath, c.Ring)
			if now.Stats == nil {
				c.Action, c.Reason = "error", "cannot be opened after archiving: "+oneLine(now.Err)
				continue
			}
			if users := now.LiveUsers(); len(users) > 0 {
				c.Action, c.Reason = "skip", "in use by "+strings.Join(users, ", ")+" (attached while cleaning)"
				continue
			}
			if n := sub(now.Stats.TailPos, now.Stats.ArchivedPos); n > 0 {
				c.Action, c.Reason = "error", fmt.Sprintf("%s still not archived after opening the topic", humanBytes(n))
				continue
			}
		}
		if err := removeRing(shmPath, c.Ring); err != nil {
			c.Action, c.Reason = "error", oneLine(err.Error())
			continue
		}
		c.Action = "removed"
	}
	// Opening a topic to archive maps every partition, which makes rings for
	// partitions that had none: remove those again.
	for k, err := range archived {
		if err != nil {
			continue
		}
		rings, err := driver.ListRings(shmPath)
		if err != nil {
			break
		}
		for _, r := range rings {
			if known[r.Name] || r.Info == nil || r.Info.Root != k.root || r.Info.Topic != k.topic || r.Stats == nil {
				continue
			}
			if len(r.LiveUsers()) > 0 || (r.Stats.Durable && r.Stats.ArchivedPos < r.Stats.TailPos) {
				continue
			}
			if removeRing(shmPath, r.Name) == nil {
				p := r.Info.Partition
				plan = append(plan, cleanAction{Ring: r.Name, Topic: k.topic, Partition: &p, Root: k.root,
					Action: "removed", Reason: "made by opening the topic to archive; the log holds all it has"})
			}
		}
	}
	return plan
}
