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
	cl, err := kgo.NewClient(append(d.opts.base(),
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
// partition with none is absent. It reads each partition of the topic
// from its end backwards, as far as it takes.
func (s *Sink) LastForwarded(source string, n int) (map[int]uint64, error) {
	ctx, cancel := s.t.d.ctx()
	defer cancel()
	out := map[int]uint64{}
	kt := s.t.kt
	starts, err := s.t.d.adm.ListStartOffsets(ctx, kt)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", s.t.name, err)
	}
	ends, err := s.t.d.adm.ListCommittedOffsets(ctx, kt) // the last stable offset: what read_committed sees
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", s.t.name, err)
	}
	for q := range s.t.infos {
		want := map[int]bool{}
		for p := q; p < n; p += len(s.t.infos) {
			want[p] = true
		}
		if len(want) == 0 {
			continue
		}
		so, _ := starts.Lookup(kt, int32(q))
		eo, _ := ends.Lookup(kt, int32(q))
		if so.Err != nil || eo.Err != nil {
			return nil, fmt.Errorf("topic %q partition %d: %w", s.t.name, q, errors.Join(so.Err, eo.Err))
		}
		const window = 4096
		for hi := eo.Offset; hi > so.Offset && len(want) > 0; hi -= window {
			lo := max(so.Offset, hi-window)
			found, err := s.scan(ctx, q, lo, hi, source)
			if err != nil {
				return nil, err
			}
			for p, id := range found {
				if want[p] {
					out[p] = id
					delete(want, p)
				}
			}
		}
	}
	return out, nil
}

// scan reads offsets [lo, hi) of partition q, committed records only, and
// returns the highest origin ID of each partition of source in them.
func (s *Sink) scan(ctx context.Context, q int, lo, hi int64, source string) (map[int]uint64, error) {
	cl, err := kgo.NewClient(append(s.t.d.opts.base(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.t.kt: {int32(q): kgo.NewOffset().At(lo)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(max(s.t.d.opts.MaxMessage, 50<<20)),
		kgo.FetchMaxPartitionBytes(max(s.t.d.opts.MaxMessage, 1<<20)),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	found := map[int]uint64{}
	next := lo
	for next < hi {
		// A poll that brings nothing means the rest of the range holds
		// only control records of transactions (they take offsets too).
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("topic %q partition %d: read what was forwarded: %w", s.t.name, q, err)
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return nil, fmt.Errorf("topic %q partition %d: read what was forwarded: %w", s.t.name, q, fe.Err)
		}
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= next {
				next = r.Offset + 1
			}
			if r.Offset >= hi {
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
