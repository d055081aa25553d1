package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/diaspora-shm/diaspora"
)

// ackEvery is how many events consume reads before it acknowledges; it also
// acknowledges before it waits and when it stops.
const ackEvery = 256

// eventLine is one line of consume's output.
type eventLine struct {
	ID        uint64          `json:"id"`
	Partition int             `json:"partition"`
	Metadata  json.RawMessage `json:"metadata"`
	DataSize  int             `json:"data_size"`
	Data      *string         `json:"data,omitempty"` // base64, with --data
}

func (a *app) newConsumeCmd() *cobra.Command {
	var (
		name     string
		withData bool
		follow   bool
		ack      bool
		from     string
		limit    uint64
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "consume TOPIC --name CONSUMER",
		Short: "Print events as JSON lines",
		Long: `Print the events of TOPIC, one JSON object a line:

  {"id":12,"partition":0,"metadata":{...},"data_size":4096}

"data_size" is the size of the event's data, whether --data is given or
not; --data adds the data itself, base64 encoded, as "data". Without --follow it
stops once no event came for --timeout (default 1s); with --follow it waits
for more until interrupted. It also stops at the end of a complete topic and
after -n events. --ack acknowledges what was printed, so that the consumer
name resumes after it next time; --from says where a new consumer name
starts (earliest or latest).

Lines are written in batches. With --ack, an event is acknowledged once its
line is wholly written to standard output. When the reader closes the pipe
early (consume ... | head -n 3), consume acknowledges what it wrote, stops and
exits with status 0, silently; what the pipe held that the reader did not
read counts as written, so use -n to take an exact number of events.`,
		Example: `  diaspora-shmctl consume sim --name ana
  diaspora-shmctl consume sim --name ana --ack --follow
  diaspora-shmctl consume sim --name peek --from latest -n 10 --data`,
		Args: exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return errors.New("consume: missing --name (the consumer's name)")
			}
			if from != "earliest" && from != "latest" {
				return fmt.Errorf("--from must be earliest or latest, not %q", from)
			}
			if timeout < 0 {
				return fmt.Errorf("--timeout must not be negative, got %s", timeout)
			}
			d, t, err := a.openTopic(args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			cargs := []diaspora.Arg{}
			if cmd.Flags().Changed("from") {
				opts, err := diaspora.MetadataOf(map[string]string{"start": from})
				if err != nil {
					return err
				}
				cargs = append(cargs, opts)
			}
			sizes := newDataSizes()
			if withData {
				cargs = append(cargs, diaspora.FullDataSelector, diaspora.BytesAllocator)
			} else {
				// Select nothing, but learn each event's data size. With an
				// allocator the consumer copies, so it pins no ring space.
				cargs = append(cargs, diaspora.DataSelector(sizes.selector), diaspora.BytesAllocator)
			}
			c, err := t.Consumer(name, cargs...)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err = a.consume(ctx, c, consumeOptions{sizes: sizes, data: withData, follow: follow, ack: ack, limit: limit, timeout: timeout})
			if cerr := c.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			return d.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the consumer's `name` (required): acknowledged positions are kept per name")
	f.BoolVar(&withData, "data", false, "add each event's data, base64 encoded")
	f.BoolVarP(&follow, "follow", "f", false, "wait for more events until interrupted")
	f.BoolVar(&ack, "ack", false, "acknowledge the events printed")
	f.StringVar(&from, "from", "earliest", "where a new consumer name starts: earliest or latest")
	f.Uint64VarP(&limit, "num", "n", 0, "stop after this many events (0: no limit)")
	f.DurationVar(&timeout, "timeout", time.Second, "without --follow, stop when no event came for this long")
	return cmd
}

type consumeOptions struct {
	sizes             *dataSizes
	data, follow, ack bool
	limit             uint64
	timeout           time.Duration
}

// consume prints events until the options say stop. Lines are written in
// batches; with --ack the last event of each partition whose line was
// wholly written is acknowledged after each batch: every ackEvery events,
// before waiting, at the end, and also when a write fails (a reader that
// closed the pipe early), so that the name resumes after what was written.
func (a *app) consume(ctx context.Context, c diaspora.Consumer, o consumeOptions) error {
	type written struct {
		end       int // offset in buf just past the event's line
		partition int
		ev        diaspora.Event
	}
	var (
		buf     []byte
		lines   []written
		toAck   = map[int]diaspora.Event{}
		unacked int
	)
	flush := func() error {
		var werr error
		if len(buf) > 0 {
			var n int
			n, werr = a.stdout.Write(buf)
			for _, l := range lines {
				if l.end > n {
					break
				}
				if o.ack {
					toAck[l.partition] = l.ev
				}
			}
			buf, lines = buf[:0], lines[:0]
		}
		for p, ev := range toAck {
			if err := ev.Acknowledge(); err != nil {
				return fmt.Errorf("acknowledge event %d of partition %d: %s", ev.ID(), p, errorText(err))
			}
			delete(toAck, p)
		}
		unacked = 0
		return werr
	}
	var count uint64
	for o.limit == 0 || count < o.limit {
		fut := c.Pull()
		ev, err := fut.Wait(2 * time.Millisecond)
		if errors.Is(err, diaspora.ErrTimeout) {
			// Nothing at once: make what was read visible and durable first.
			if err := flush(); err != nil {
				return err
			}
			ev, err = waitEvent(ctx, fut, o)
		}
		if errors.Is(err, diaspora.ErrTimeout) || errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		if ev.ID() == diaspora.NoMoreEvents {
			break
		}
		line := eventLine{ID: ev.ID(), Partition: partitionOf(ev), Metadata: json.RawMessage(ev.Metadata().Bytes())}
		dv := ev.Data()
		line.DataSize = dv.Size()
		if n, ok := o.sizes.take(ev.Metadata()); ok && !o.data {
			line.DataSize = n
		}
		if o.data {
			enc := base64.StdEncoding.EncodeToString(dv.Bytes())
			line.Data = &enc
		}
		text, err := json.Marshal(line)
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("event %d: %w", ev.ID(), err)
		}
		buf = append(append(buf, text...), '\n')
		lines = append(lines, written{end: len(buf), partition: line.Partition, ev: ev})
		count++
		if unacked++; unacked >= ackEvery || len(buf) >= 64<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// waitEvent waits for fut: up to o.timeout, or until ctx ends with --follow.
func waitEvent(ctx context.Context, fut diaspora.Future[diaspora.Event], o consumeOptions) (diaspora.Event, error) {
	deadline := time.Now().Add(o.timeout)
	for {
		step := 100 * time.Millisecond
		if !o.follow {
			left := time.Until(deadline)
			if left <= 0 {
				return diaspora.Event{}, diaspora.ErrTimeout
			}
			step = min(step, left)
		}
		ev, err := fut.Wait(step)
		if !errors.Is(err, diaspora.ErrTimeout) {
			return ev, err
		}
		if ctx.Err() != nil {
			return diaspora.Event{}, context.Canceled
		}
	}
}

// partitionOf reads the partition number from the event's partition info.
func partitionOf(ev diaspora.Event) int {
	var info struct {
		ID int `json:"id"`
	}
	if err := ev.Partition().Decode(&info); err != nil {
		return -1
	}
	return info.ID
}

// dataSizes is a DataSelector that selects no data and remembers the size of
// each event's data, for consume without --data. The size is found again by
// the event's metadata, which the driver hands to the selector and then to
// the event: its buffer's address is the key.
type dataSizes struct {
	mu sync.Mutex
	m  map[*byte][]int
}

func newDataSizes() *dataSizes { return &dataSizes{m: map[*byte][]int{}} }

func metaKey(md diaspora.Metadata) *byte {
	b := md.Bytes()
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

func (s *dataSizes) selector(md diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
	k := metaKey(md)
	s.mu.Lock()
	s.m[k] = append(s.m[k], d.Size())
	s.mu.Unlock()
	return diaspora.DataDescriptor{}, nil
}

// take returns, and forgets, the data size recorded for md.
func (s *dataSizes) take(md diaspora.Metadata) (int, bool) {
	if s == nil {
		return 0, false
	}
	k := metaKey(md)
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.m[k]
	if len(q) == 0 {
		return 0, false
	}
	n := q[0]
	if len(q) == 1 {
		delete(s.m, k)
	} else {
		s.m[k] = q[1:]
	}
	return n, true
}
