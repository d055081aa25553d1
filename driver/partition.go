package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/ring"
	"github.com/diaspora-shm/diaspora/segment"
	"github.com/diaspora-shm/diaspora/shm"
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
	r, err := p.openRing()
	if err != nil {
		return nil, err
	}
	p.ring = r
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
func (p *partition) openRing() (*ring.Ring, error) {
	d := p.topic.d
	name := ringFileName(d.opts.RootPath, p.topic.cfg.ID, p.index)
	r, err := ring.Open(d.opts.ShmPath, name)
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
	info, err := json.Marshal(RingInfo{Root: d.opts.RootPath, Topic: p.topic.name, TopicID: p.topic.cfg.ID, Partition: p.index})
	if err != nil {
		return nil, err
	}
	infoPath := filepath.Join(d.opts.ShmPath, ringInfoName(name))
	if err := os.WriteFile(infoPath, info, p.topic.opts.Mode); err != nil {
		return nil, fmt.Errorf("shm driver: %s: write ring info: %w", p, err)
	}
	os.Chmod(infoPath, p.topic.opts.Mode) // the umask trimmed it
	// Build the ring under a temporary name and link it into place, so that
	// no process ever maps a ring whose header is half written, and of two
	// processes creating it at once one wins and the other maps the winner's.
	tmp := name + ".tmp-" + newTopicID()
	nr, err := ring.Create(d.opts.ShmPath, tmp, ring.Options{
		Capacity:    p.topic.opts.RingSize,
		ReaderSlots: p.topic.opts.ReaderSlots,
		FirstID:     first,
		Durable:     p.topic.opts.Durability != DurabilityNone,
		Perm:        p.topic.opts.Mode,
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
	r, err = ring.Open(d.opts.ShmPath, name)
	if err != nil {
		return nil, fmt.Errorf("shm driver: %s: %w", p, err)
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
			if err != nil {
				p.archiveErr.Store(&err)
				// It is retried every archiverRetry: log each new failure once.
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					p.topic.d.logger.Error("archiver stopped, retrying", "topic", p.topic.name, "partition", p.index, "err", err)
				}
			}
		} else if !errors.Is(err, segment.ErrLocked) && !logged {
			p.topic.d.logger.Error("cannot take the archiver lock", "topic", p.topic.name, "partition", p.index, "err", err)
			logged = true
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
