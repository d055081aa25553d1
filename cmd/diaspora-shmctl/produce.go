package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/diaspora-shm/diaspora"
)

// produceWindow is how many pushes may be in flight before produce waits
// for the oldest.
const produceWindow = 4096

// maxLine is the longest input line produce accepts.
const maxLine = 64 << 20

func (a *app) newProduceCmd() *cobra.Command {
	var (
		format    string
		dataFile  string
		verbose   bool
		partition int
		producer  string
	)
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Push each line of standard input as an event",
		Long: `Push each line of standard input as an event of TOPIC.

With --format raw (the default) an event's metadata is the line as a JSON
string, so a line must be valid UTF-8: one that is not is an error naming the
line and the byte (binary belongs in --data-file). With --format json the line
is parsed as the metadata, blank lines are skipped and a line that is not JSON
is an error naming its number. --data-file
attaches the bytes of a file to every event. --partition sends every event to
one partition instead of letting the topic's partition selector choose. -v
prints each event as it is stored, one JSON object a line:

  {"id":12,"partition":0}

(with -v the tool asks the topic's partition selector for each event's
partition itself, then pushes the event there).

Events are pushed in batches. When a line fails (not JSON, rejected by the
validator, ...) produce stops reading, flushes what it pushed before, and the
error names the line and says how many events were stored.`,
		Example: `  seq 1000 | diaspora-shmctl produce sim
  diaspora-shmctl produce sim --format json < events.jsonl
  echo '{"step":1}' | diaspora-shmctl produce sim --format json --data-file frame.bin -v
  yes hello | head -n 100 | diaspora-shmctl produce sim --partition 2`,
		Args: exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "raw" && format != "json" {
				return fmt.Errorf("--format must be raw or json, not %q", format)
			}
			var data diaspora.DataView
			if dataFile != "" {
				b, err := os.ReadFile(dataFile)
				if err != nil {
					return fmt.Errorf("--data-file: %w", err)
				}
				data = diaspora.DataView{b}
			}
			if partition < -1 {
				return fmt.Errorf("--partition must be a partition number >= 0, not %d", partition)
			}
			d, t, err := a.openTopic(args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			if partition >= len(t.Partitions()) {
				return fmt.Errorf("--partition %d: topic %q has %d partitions", partition, args[0], len(t.Partitions()))
			}
			p, err := t.Producer(producer)
			if err != nil {
				return err
			}
			n, err := a.produce(t, p, format, data, partition, verbose)
			if cerr := p.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
			if verbose {
				fmt.Fprintf(a.stderr, "%s: produced %d events\n", progName, n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "raw", "how a line becomes metadata: raw (a JSON string) or json")
	f.StringVar(&dataFile, "data-file", "", "attach this `file`'s bytes to every event")
	f.BoolVarP(&verbose, "verbose", "v", false, "print each event's partition and ID")
	f.IntVar(&partition, "partition", -1, "send every event to this partition (default: the selector chooses)")
	f.StringVar(&producer, "producer-name", progName, "the producer's `name`")
	return cmd
}

// pending is a push not yet known to be stored.
type pending struct {
	line      int
	partition int // -1: chosen by the driver
	fut       diaspora.Future[diaspora.EventID]
}

// producedLine is what -v prints of each event stored.
type producedLine struct {
	ID        uint64 `json:"id"`
	Partition int    `json:"partition"`
}

// produce pushes every line of stdin and returns how many events were stored.
// When a line fails, what was pushed before it is flushed and waited for,
// and the error says how many events were stored.
func (a *app) produce(t diaspora.TopicHandle, p diaspora.Producer, format string, data diaspora.DataView, partition int, verbose bool) (int, error) {
	r := bufio.NewReaderSize(a.stdin, 1<<16)
	prog := a.newProgress("produced", 0)
	defer prog.done()
	out := bufio.NewWriter(a.stdout)
	defer out.Flush()
	var (
		inflight []pending
		stored   int
		// The first push that failed, and what was stored after it.
		failLine    int
		failErr     error
		storedAfter int
	)
	wait := func(keep int) {
		for len(inflight) > keep {
			pd := inflight[0]
			inflight = inflight[1:]
			id, err := pd.fut.Wait(-1)
			switch {
			case err != nil && failErr == nil:
				failLine, failErr = pd.line, err
			case err != nil:
			case failErr != nil:
				storedAfter++
			default:
				stored++
			}
			if err == nil && verbose {
				text, _ := json.Marshal(producedLine{ID: uint64(id), Partition: pd.partition})
				out.Write(append(text, '\n'))
			}
		}
	}
	// finish flushes and waits for every push, then says how it went; err,
	// if not nil, is what went wrong at line lineNo before its push.
	finish := func(lineNo int, err error) error {
		_, ferr := p.Flush().Wait(-1)
		wait(0)
		if failErr == nil && err == nil && ferr != nil {
			return fmt.Errorf("flush: %s (%d events stored)", errorText(ferr), stored)
		}
		if failErr != nil {
			lineNo, err = failLine, failErr
		}
		if err == nil {
			return nil
		}
		msg := fmt.Sprintf("line %d: %s; %s of the lines before it stored and flushed", lineNo, errorText(err), plural(stored, "event"))
		if storedAfter > 0 {
			msg += fmt.Sprintf(", and %s of lines after it (already pushed)", plural(storedAfter, "event"))
		}
		return errors.New(msg)
	}
	// With -v, ask the topic's selector here, as the driver would, to know
	// the partition of each event.
	choose := verbose && partition < 0
	sel := t.PartitionSelector()
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stored, finish(lineNo, fmt.Errorf("standard input: %w", err))
		}
		var md diaspora.Metadata
		if format == "json" {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if md, err = diaspora.NewMetadata(string(line)); err != nil {
				return stored, finish(lineNo, err)
			}
		} else {
			// A JSON string holds text only: invalid UTF-8 would come out
			// changed (U+FFFD), so it is refused.
			if at := invalidUTF8(line); at >= 0 {
				return stored, finish(lineNo, fmt.Errorf("not valid UTF-8 (byte %d): a raw line becomes a JSON string, which holds text only", at+1))
			}
			md = diaspora.StringMetadata(string(line))
		}
		part := partition
		if choose {
			if part, err = sel.SelectPartitionFor(md, diaspora.AnyPartition); err != nil {
				return stored, finish(lineNo, fmt.Errorf("partition selector: %w", err))
			}
		}
		var fut diaspora.Future[diaspora.EventID]
		if part >= 0 {
			fut = p.PushTo(part, md, data)
		} else {
			fut = p.Push(md, data)
		}
		inflight = append(inflight, pending{line: lineNo, partition: part, fut: fut})
		if len(inflight) >= produceWindow {
			if _, err := p.Flush().Wait(-1); err != nil {
				return stored, finish(lineNo, fmt.Errorf("flush: %w", err))
			}
			if wait(produceWindow / 2); failErr != nil {
				return stored, finish(0, nil)
			}
		}
		prog.update(lineNo)
	}
	return stored, finish(0, nil)
}

// invalidUTF8 returns the offset of the first byte of b that is not valid
// UTF-8, or -1.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// plural is "1 event", "2 events".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// readLine reads one line without its "\n" (or "\r\n"); a last line without
// a newline counts. It returns io.EOF when nothing is left.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("longer than %d bytes", maxLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil, io.EOF
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		return line, nil
	}
}
