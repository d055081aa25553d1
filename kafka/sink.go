package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/diaspora-shm/diaspora"
)

// Headers of a forwarded record: where its event came from.
const (
	headerSource    = "diaspora-source"           // "driver/topic" of the source
	headerPartition = "diaspora-source-partition" // decimal
	headerID        = "diaspora-source-id"        // decimal event ID in that partition
)

// Origin says where a forwarded event came from.
type Origin struct {
	Source    string // the source as the forwarder names it, "driver/topic"
	Partition int
	ID        uint64
}

// Forwarded is one event for Sink.Write.
type Forwarded struct {
	Origin   Origin
	Metadata diaspora.Metadata
	Data     diaspora.DataView
}

// Sink writes forwarded events to a topic of the driver in Kafka
// transactions, each record carrying its Origin in headers, so that a
// forwarder that restarts (after a kill, at any moment) reads back what it
// last forwarded and neither loses nor repeats an event. An event of
// source partition p goes to partition p modulo the topic's partitions.
//
// The transactional ID fences: a sink opened with the ID of another one
// (the forwarder's previous life, or a second forwarder of the same
// policy) aborts that one's open transaction, and its later writes fail.
type Sink struct {
	t  *topic
	cl *kgo.Client
}

// OpenSink opens a sink of topic with transactional ID txnID.
func (d *Driver) OpenSink(topicName, txnID string) (*Sink, error) {
	th, err := d.OpenTopic(topicName)
	if err != nil {
		return nil, err
	}
	t := th.(*topic)
	cl, err := kgo.NewClient(append(append(d.opts.base(), d.opts.producerOpts...),
		kgo.TransactionalID(txnID),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(t.batchMax()),
		kgo.RecordDeliveryTimeout(d.opts.PushTimeout),
	)...)
	if err != nil {
		return nil, err
	}
	return &Sink{t: t, cl: cl}, nil
}

// Partitions is the number of partitions of the sink's topic.
func (s *Sink) Partitions() int { return len(s.t.infos) }

// Write writes evs in one transaction: all of them, or none.
func (s *Sink) Write(evs []Forwarded) error {
	if len(evs) == 0 {
		return nil
	}
	ctx, cancel := s.t.d.ctx()
	defer cancel()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		rec, err := s.t.record(e.Metadata, e.Data, e.Origin.Partition%len(s.t.infos), true)
		if err != nil {
			return fmt.Errorf("forward %s partition %d event %d to topic %q: %w", e.Origin.Source, e.Origin.Partition, e.Origin.ID, s.t.name, err)
		}
		rec.Headers = []kgo.RecordHeader{
			{Key: headerSource, Value: []byte(e.Origin.Source)},
			{Key: headerPartition, Value: strconv.AppendInt(nil, int64(e.Origin.Partition), 10)},
			{Key: headerID, Value: strconv.AppendUint(nil, e.Origin.ID, 10)},
		}
		recs[i] = rec
	}
	if err := s.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("topic %q: begin a transaction: %w", s.t.name, err)
	}
	var first error
	for _, r := range recs {
		s.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil && first == nil {
				first = err
			}
		})
	}
	ferr := s.cl.Flush(ctx)
	commit := kgo.TryCommit
	if ferr != nil || first != nil {
		commit = kgo.TryAbort
	}
	eerr := s.cl.EndTransaction(ctx, commit)
	if err := errors.Join(ferr, first); err != nil {
		return fmt.Errorf("topic %q: write %d forwarded events: %w", s.t.name, len(evs), errors.Join(err, eerr))
	}
	if eerr != nil {
		return fmt.Errorf("topic %q: commit %d forwarded events: %w", s.t.name, len(evs), eerr)
	}
	return nil
}

// LastForwarded reads back, for each of the source's partitions 0..n-1,
// the ID of the last event of it that a committed transaction wrote; a
// partition with none is absent. It first fences the sink's previous
// instance (its open transaction is aborted, a commit it sent completes)
// and waits for every open transaction on the topic to end, so that what
// it reads is final; then it reads each partition from its end backwards,
// as far as it takes.
func (s *Sink) LastForwarded(source string, n int) (map[int]uint64, error) {
	ctx, cancel := s.t.d.ctx()
	defer cancel()
	if _, _, err := s.cl.ProducerID(ctx); err != nil {
		return nil, fmt.Errorf("topic %q: fence the forwarder's previous instance: %w", s.t.name, err)
	}
	kt := s.t.kt
	starts, err := s.t.d.adm.ListStartOffsets(ctx, kt)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", s.t.name, err)
	}
	ends, err := s.settled(ctx)
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for q := range s.t.infos {
		want := map[int]bool{}
		for p := q; p < n; p += len(s.t.infos) {
			want[p] = true
		}
		if len(want) == 0 {
			continue
		}
		so, _ := starts.Lookup(kt, int32(q))
		if so.Err != nil {
			return nil, fmt.Errorf("topic %q partition %d: %w", s.t.name, q, so.Err)
		}
		end := ends[q]
		// Each partition gets a budget of its own: a scan reads as far back
		// as the last forwarded event of each source partition.
		pctx, pcancel := context.WithTimeout(context.Background(), scanBudget)
		const window = 4096
		for hi := end; hi > so.Offset && len(want) > 0; hi -= window {
			lo := max(so.Offset, hi-window)
			found, err := s.scan(pctx, q, lo, hi, source)
			if err != nil {
				pcancel()
				return nil, err
			}
			for p, id := range found {
				if want[p] {
					out[p] = id
					delete(want, p)
				}
			}
		}
		pcancel()
	}
	return out, nil
}

// scanBudget bounds the backward read of one partition by LastForwarded.
const scanBudget = 5 * time.Minute

// settled waits until no transaction is open on any partition of the
// topic (the last stable offset reaches the end), and returns the ends.
func (s *Sink) settled(ctx context.Context) (map[int]int64, error) {
	kt := s.t.kt
	for {
		ends, err := s.t.d.adm.ListEndOffsets(ctx, kt)
		if err != nil {
			return nil, fmt.Errorf("topic %q: %w", s.t.name, err)
		}
		stable, err := s.t.d.adm.ListCommittedOffsets(ctx, kt)
		if err != nil {
			return nil, fmt.Errorf("topic %q: %w", s.t.name, err)
		}
		out, open := map[int]int64{}, false
		for q := range s.t.infos {
			e, _ := ends.Lookup(kt, int32(q))
			l, _ := stable.Lookup(kt, int32(q))
			if e.Err != nil || l.Err != nil {
				return nil, fmt.Errorf("topic %q partition %d: %w", s.t.name, q, errors.Join(e.Err, l.Err))
			}
			out[q] = e.Offset
			open = open || l.Offset < e.Offset
		}
		if !open {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic %q: a transaction of another writer stayed open: %w", s.t.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scan reads offsets [lo, hi) of partition q, committed records only, and
// returns the highest origin ID of each partition of source in them. With
// no transaction open, the offset hi-1 is a committed record or the marker
// that ended a transaction; control records are kept to see it, so the
// scan ends by offset, however slow the broker.
func (s *Sink) scan(ctx context.Context, q int, lo, hi int64, source string) (map[int]uint64, error) {
	cl, err := kgo.NewClient(append(s.t.d.opts.base(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.t.kt: {int32(q): kgo.NewOffset().At(lo)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(max(s.t.d.opts.MaxMessage, 50<<20)),
		kgo.FetchMaxPartitionBytes(max(s.t.d.opts.MaxMessage, 1<<20)),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	found := map[int]uint64{}
	for seen := lo - 1; seen < hi-1; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("topic %q partition %d: read what was forwarded (offsets %d..%d, at %d): %w", s.t.name, q, lo, hi, seen+1, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("topic %q partition %d: read what was forwarded: %w", s.t.name, q, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen = max(seen, r.Offset)
			if r.Offset >= hi || r.Attrs.IsControl() {
				return
			}
			var src string
			part, id := -1, uint64(0)
			ok := 0
			for _, h := range r.Headers {
				switch h.Key {
				case headerSource:
					src = string(h.Value)
					ok++
				case headerPartition:
					if v, err := strconv.Atoi(string(h.Value)); err == nil {
						part = v
						ok++
					}
				case headerID:
					if v, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil {
						id = v
						ok++
					}
				}
			}
			if ok == 3 && src == source && part >= 0 {
				if cur, seen := found[part]; !seen || id > cur {
					found[part] = id
				}
			}
		})
	}
	return found, nil
}

// Close aborts an open transaction, if any, and closes the client.
func (s *Sink) Close() error {
	s.cl.Close()
	return nil
}
