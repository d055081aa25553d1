package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/segment"
	"github.com/diaspora-shm/diaspora/shm"
	"golang.org/x/sys/unix"
)

// partition is this process's view of one partition of an open topic: the
// mapped ring, the log directory, and the archiver contender that archives
// the ring into the log whenever this process holds the log's lock.
type partition struct {
	topic *topicState
	index int
	dir   string // the segment log directory
	ring  *ring.Ring
	lease idLease

	stop chan struct{}
	done chan struct{}

	archiveErr atomic.Pointer[error] // the last failure of this process's archiver
	closed     atomic.Bool           // set before the ring is unmapped

	// One producer slot in the ring says this process produces to it, for
	// as long as it has producers of the topic open.
	prodMu    sync.Mutex
	producers int
	prodSlot  *ring.ProducerSlot

	// dirFD holds the partition's log directory open, so the archiver can
	// tell, before it writes, that the directory is still the topic's: not
	// deleted (its link count drops to 0) nor replaced by a new topic of
	// the same name (the path leads to another inode; ours cannot be
	// reused while we hold it).
	dirFD int

	// views is set once this process handed out slices of the ring that
	// may outlive it (zero-copy events, claims): the ring's addresses then
	// stay mapped, to zeros, after close.
	views atomic.Bool
}

// waitArchived waits up to wait for the log to hold everything before end.
// A failure of this process's archiver that waiting will not mend (a
// read-only root, no permission, the topic gone) ends the wait at once,
// with the archiver's error in it.
func (p *partition) waitArchived(end uint64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		step := min(time.Until(deadline), archiverRetry)
		err := p.ring.WaitArchived(end, max(step, 0))
		if err == nil || !errors.Is(err, ring.ErrTimeout) {
			return err
		}
		if e := p.archiveErr.Load(); e != nil && archiveHopeless(*e) && !p.otherArchiverAlive() {
			return fmt.Errorf("the archiver of %s cannot write the log: %w", p, *e)
		}
		if !time.Now().Before(deadline) {
			return err
		}
	}
}

// otherArchiverAlive reports whether the ring's archiver is another live
// process, which may write the log where this one cannot.
func (p *partition) otherArchiverAlive() bool {
	a := p.ring.Stats().Archiver
	return a.PID != 0 && a != shm.Self() && a.Alive()
}

// archiveHopeless reports whether an archiver's error will not go away by
// itself while the push waits.
func archiveHopeless(err error) bool {
	return errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, errTopicGone) || errors.Is(err, ring.ErrDeleted)
}

// errTopicGone says the partition's directory is no longer its topic's.
var errTopicGone = errors.New("the topic was deleted or replaced under this process")

// checkDir returns errTopicGone when the log directory was deleted or
// replaced since the partition was opened.
func (p *partition) checkDir() error {
	var held, now unix.Stat_t
	if err := unix.Fstat(p.dirFD, &held); err != nil {
		return fmt.Errorf("%s: fstat %s: %w", p, p.dir, err)
	}
	err := unix.Stat(p.dir, &now)
	if held.Nlink == 0 || err == unix.ENOENT || (err == nil && (now.Ino != held.Ino || now.Dev != held.Dev)) {
		return fmt.Errorf("%w: %s: %s is not the directory it opened", errTopicGone, p, p.dir)
	}
	if err != nil {
		return fmt.Errorf("%s: stat %s: %w", p, p.dir, err)
	}
	return nil
}

// addProducer counts a producer of this process; the first takes the
// partition's producer slot in the ring.
func (p *partition) addProducer(name string) (err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, p)
	p.prodMu.Lock()
	defer p.prodMu.Unlock()
	if p.producers == 0 {
		// The slot only makes the producer visible: with every producer
		// slot taken, it produces unseen rather than not at all.
		if ps, err := p.ring.AttachProducer(name); err == nil {
			p.prodSlot = ps
		} else if errors.Is(err, ring.ErrNoSlot) {
			p.topic.d.logger.Warn("no free producer slot: tools will not see this producer", "topic", p.topic.name, "partition", p.index, "err", err)
		} else {
			return fmt.Errorf("shm driver: %s: producer %q: %w", p, name, err)
		}
	}
	p.producers++
	return nil
}

// removeProducer undoes addProducer; the last one frees the slot.
func (p *partition) removeProducer() (err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, p)
	p.prodMu.Lock()
	defer p.prodMu.Unlock()
	if p.producers--; p.producers == 0 && p.prodSlot != nil {
		p.prodSlot.Close()
		p.prodSlot = nil
	}
	return nil
}

// errClosed is what futures of a closed partition's pushes report.
func (p *partition) errClosed() error {
	return fmt.Errorf("%w: %s was closed with its driver", diaspora.ErrClosed, p)
}

// archiverState says who archives the partition and, when this process
// does, what last went wrong, for errors about the log not keeping up.
func (p *partition) archiverState() string {
	if e := p.archiveErr.Load(); e != nil {
		return "the archiver in this process failed: " + (*e).Error()
	}
	st := p.ring.Stats()
	if st.Archiver.PID == 0 {
		return "no process has archived this partition yet"
	}
	if !st.Archiver.Alive() {
		return fmt.Sprintf("the last archiver, pid %d, is gone and no process took over", st.Archiver.PID)
	}
	return fmt.Sprintf("the archiver, pid %d, is not keeping up or cannot write the log", st.Archiver.PID)
}

func openPartition(t *topicState, index int) (*partition, error) {
	p := &partition{topic: t, index: index, dir: partitionDir(t.d.opts.RootPath, t.name, index)}
	p.lease = idLease{dir: p.dir, mode: t.opts.Mode, logger: t.d.logger.With("topic", t.name, "partition", index)}
	fd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm driver: %s: open %s: %w", p, p.dir, err)
	}
	p.dirFD = fd
	r, err := p.openRing()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	p.ring = r
	r.SetAbandonTimeout(t.opts.ClaimTimeout)
	if _, err := os.Stat(filepath.Join(topicDir(t.d.opts.RootPath, t.name), completeFile)); err == nil {
		r.MarkComplete()
	}
	if t.opts.Durability != DurabilityNone {
		p.stop = make(chan struct{})
		p.done = make(chan struct{})
		go p.contendForArchiver()
	}
	return p, nil
}

func (p *partition) String() string {
	return fmt.Sprintf("topic %q partition %d", p.topic.name, p.index)
}

// openRing maps the partition's ring, creating it when it does not exist: at
// the first open ever, or after /dev/shm was lost, when it is rebuilt so that
// IDs continue after everything the log holds or a consumer acknowledged.
// The shm directory is shared with every user: a file at the ring's name
// that is not the topic's (see ringTrust; or a ring of another topic or
// partition, such as a hard link) is refused, never mapped; a missing ring
// is built under a fresh name and linked into place, so nothing planted at
// the name meanwhile is followed or reused.
func (p *partition) openRing() (*ring.Ring, error) {
	d := p.topic.d
	t := p.topic
	trust := ringTrust(t.opts, t.owner)
	name := ringFileName(d.opts.RootPath, t.cfg.ID, p.index)
	r, err := p.openOwnRing(name, trust)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("shm driver: %s: %w", p, err)
	}
	first, err := p.nextIDFloor()
	if err != nil {
		return nil, err
	}
	gid := -1
	if t.opts.Mode&0o060 != 0 {
		gid = int(t.owner.GID)
	}
	info, err := json.Marshal(RingInfo{Root: d.opts.RootPath, Topic: t.name, TopicID: t.cfg.ID, Partition: p.index})
	if err != nil {
		return nil, err
	}
	if err := shm.WriteFileAtomic(d.opts.ShmPath, ringInfoName(name), info, t.opts.Mode, gid); err != nil {
		// The sidecar only tells tools whose ring this is; another user's
		// file at its name (which the sticky shm directory keeps us from
		// replacing) must not keep the topic from working.
		d.logger.Warn("cannot write the ring's sidecar; diaspora-shmctl will not know whose ring it is", "topic", t.name, "partition", p.index, "err", err)
	}
	// Build the ring under a temporary name and link it into place, so that
	// no process ever maps a ring whose header is half written, and of two
	// processes creating it at once one wins and the other maps the winner's.
	tmp := name + ".tmp-" + newTopicID()
	nr, err := ring.Create(d.opts.ShmPath, tmp, ring.Options{
		Capacity:    t.opts.RingSize,
		ReaderSlots: t.opts.ReaderSlots,
		FirstID:     first,
		Durable:     t.opts.Durability != DurabilityNone,
		Perm:        t.opts.Mode,
		GID:         gid,
		TopicID:     t.id,
		Partition:   uint32(p.index),
	})
	if err != nil {
		return nil, fmt.Errorf("shm driver: %s: create ring: %w", p, err)
	}
	tmpPath := filepath.Join(d.opts.ShmPath, tmp)
	linkErr := os.Link(tmpPath, filepath.Join(d.opts.ShmPath, name))
	nr.Close()
	os.Remove(tmpPath)
	if linkErr != nil && !errors.Is(linkErr, os.ErrExist) {
		return nil, fmt.Errorf("shm driver: %s: create ring: %w", p, linkErr)
	}
	r, err = p.openOwnRing(name, trust)
	if err != nil {
		return nil, fmt.Errorf("shm driver: %s: %w", p, err)
	}
	return r, nil
}

// openOwnRing opens the ring at name and checks that it is this topic's
// and this partition's.
func (p *partition) openOwnRing(name string, trust shm.Trust) (*ring.Ring, error) {
	r, err := ring.Open(p.topic.d.opts.ShmPath, name, trust)
	if err != nil {
		return nil, err
	}
	if id, part := r.TopicID(), r.Partition(); id != p.topic.id || part != uint32(p.index) {
		r.Close()
		return nil, fmt.Errorf("%w: ring %s belongs to topic id %016x partition %d, not to this one (id %016x partition %d): refusing it",
			os.ErrPermission, r.Path(), id, part, p.topic.id, p.index)
	}
	return r, nil
}

// nextIDFloor is the first ID a new ring may hand out: past everything in
// the log and past every stored consumer position, so that an ID a consumer
// has seen is never given to another event, even after events that were
// only in the lost ring.
func (p *partition) nextIDFloor() (uint64, error) {
	var first uint64
	next, ok, err := segment.LastID(p.dir)
	if err != nil {
		return 0, fmt.Errorf("shm driver: %s: read log: %w", p, err)
	}
	if ok {
		first = next
	}
	pos, err := segment.Positions(p.dir)
	if err != nil {
		return 0, fmt.Errorf("shm driver: %s: read consumer positions: %w", p, err)
	}
	for _, n := range pos {
		first = max(first, n)
	}
	lease, err := readIDLease(p.dir)
	if err != nil {
		return 0, fmt.Errorf("shm driver: %s: %w", p, err)
	}
	return max(first, lease), nil
}

// close stops the archiver (which archives what is committed first) and
// unmaps the ring. Producers and consumers of the partition are closed before.
func (p *partition) close() error {
	p.closed.Store(true)
	if p.stop != nil {
		close(p.stop)
		<-p.done
	}
	unix.Close(p.dirFD)
	if p.views.Load() {
		return p.ring.CloseKeepingViews()
	}
	return p.ring.Close()
}

const (
	archiverRetry     = 100 * time.Millisecond
	archiveMaxEvents  = 4096
	archiveMaxBytes   = 8 << 20
	retentionInterval = 10 * time.Second
)

// contendForArchiver tries, at an interval, to take the log's lock; while it
// holds it, this process is the partition's archiver. The kernel drops the
// lock when its holder dies, so another process takes over.
func (p *partition) contendForArchiver() {
	defer close(p.done)
	logged := false
	lastErr := ""
	for {
		lock, err := segment.TryLock(p.dir)
		if err == nil {
			err = p.archive()
			lock.Unlock()
			if errors.Is(err, errTopicGone) || errors.Is(err, ring.ErrDeleted) {
				// Not this process's topic any more: archiving its ring
				// into whatever is at the path now would mix two topics.
				p.archiveErr.Store(&err)
				p.topic.d.logger.Error("archiver stopped for good", "topic", p.topic.name, "partition", p.index, "err", err)
				<-p.stop
				return
			}
			if err != nil {
				p.archiveErr.Store(&err)
				// It is retried every archiverRetry: log each new failure once.
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					p.topic.d.logger.Error("archiver stopped, retrying", "topic", p.topic.name, "partition", p.index, "err", err)
				}
			}
		} else if errors.Is(err, segment.ErrLocked) {
			// Another process archives: what failed here is not the state
			// of the log any more.
			if p.archiveErr.Load() != nil {
				p.archiveErr.Store(nil)
			}
		} else {
			// Pushes that wait for the log say why it does not come.
			err = fmt.Errorf("take the archiver lock of %s: %w", p, err)
			p.archiveErr.Store(&err)
			if !logged {
				p.topic.d.logger.Error("cannot take the archiver lock", "topic", p.topic.name, "partition", p.index, "err", err)
				logged = true
			}
		}
		select {
		case <-p.stop:
			return
		case <-time.After(archiverRetry):
		}
	}
}

// archive appends committed records of the ring to the log in batches (one
// frame and at most one fsync per batch) and advances the ring's archived
// position, until stop. It returns after archiving what is committed.
func (p *partition) archive() (err error) {
	defer debug.SetPanicOnFault(armFaults())
	defer recoverFault(&err, p)
	opts := p.topic.opts
	if err := p.checkDir(); err != nil {
		return err
	}
	w, err := segment.OpenWriter(p.dir, segment.Options{
		Sync:        opts.syncPolicy(),
		SegmentSize: opts.SegmentSize,
		FirstID:     p.ring.FirstID(),
		Perm:        opts.Mode,
		Logger:      p.topic.d.logger.With("topic", p.topic.name, "partition", p.index),
	})
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p, err)
	}
	defer w.Close()
	p.ring.SetArchiver(shm.Self())
	cur := p.ring.NewCursor(p.ring.ArchivedPos())
	defer cur.Close()
	batch := make([]segment.Event, 0, 64)
	bytes := 0
	lastRetention := time.Now()
	stopping := false
	flush := func() error {
		if len(batch) > 0 {
			if err := p.checkDir(); err != nil {
				return err
			}
			if err := w.Append(batch); err != nil {
				return fmt.Errorf("append to log of %s: %w", p, err)
			}
			if p.archiveErr.Load() != nil {
				p.archiveErr.Store(nil)
			}
			clear(batch)
			batch, bytes = batch[:0], 0
		}
		if pos := cur.Position(); pos > p.ring.ArchivedPos() {
			p.ring.SetArchived(pos)
		}
		return nil
	}
	for {
		e, ok, err := cur.TryNext()
		if err != nil && !errors.Is(err, ring.ErrEndOfStream) {
			return fmt.Errorf("read ring of %s: %w", p, err)
		}
		if ok {
			// Records below the log's end were archived by an archiver that
			// died before it advanced the archived position.
			if e.ID >= w.NextID() {
				batch = append(batch, segment.Event{ID: e.ID, Meta: e.Meta, Data: e.Data})
				bytes += len(e.Meta) + len(e.Data)
			}
			if len(batch) < archiveMaxEvents && bytes < archiveMaxBytes {
				continue
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if ok {
			continue
		}
		select {
		case <-p.stop:
			if stopping {
				return nil
			}
			// Whatever was committed before stop was closed is visible
			// now: go round once more to archive it, then return.
			stopping = true
			continue
		default:
		}
		if (opts.RetentionBytes > 0 || opts.RetentionAge > 0) && time.Since(lastRetention) > retentionInterval {
			lastRetention = time.Now()
			if err := p.checkDir(); err != nil {
				return err
			}
			if _, err := w.Retain(segment.Retention{MaxBytes: opts.RetentionBytes, MaxAge: opts.RetentionAge}); err != nil {
				p.topic.d.logger.Warn("retention failed", "topic", p.topic.name, "partition", p.index, "err", err)
			}
		}
		// Sleep on the ring's futex until a record is committed; the bound
		// only lets the loop see stop.
		e, err = cur.Next(archiverRetry)
		switch {
		case err == nil:
			if e.ID >= w.NextID() {
				batch = append(batch, segment.Event{ID: e.ID, Meta: e.Meta, Data: e.Data})
				bytes += len(e.Meta) + len(e.Data)
			}
		case errors.Is(err, ring.ErrTimeout):
		case errors.Is(err, ring.ErrEndOfStream):
			// Complete and caught up: Next no longer sleeps, so wait here.
			select {
			case <-p.stop:
				return nil
			case <-time.After(archiverRetry):
			}
		default:
			return fmt.Errorf("read ring of %s: %w", p, err)
		}
	}
}
