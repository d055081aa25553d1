package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

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
string; with --format json the line is parsed as the metadata, blank lines are
skipped and a line that is not JSON is an error naming its number. --data-file
attaches the bytes of a file to every event. --partition sends every event to
one partition instead of letting the topic's partition selector choose. -v
prints each event's partition and ID as it is stored.`,
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
			n, err := a.produce(p, format, data, partition, verbose)
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
	line int
	fut  diaspora.Future[diaspora.EventID]
}

// produce pushes every line of stdin and returns how many events were stored.
func (a *app) produce(p diaspora.Producer, format string, data diaspora.DataView, partition int, verbose bool) (int, error) {
	r := bufio.NewReaderSize(a.stdin, 1<<16)
	prog := a.newProgress("produced", 0)
	defer prog.done()
	out := bufio.NewWriter(a.stdout)
	defer out.Flush()
	var (
		inflight []pending
		stored   int
	)
	wait := func(keep int) error {
		for len(inflight) > keep {
			pd := inflight[0]
			inflight = inflight[1:]
			id, err := pd.fut.Wait(-1)
			if err != nil {
				return fmt.Errorf("line %d: %s", pd.line, errorText(err))
			}
			stored++
			if verbose {
				fmt.Fprintln(out, id)
			}
		}
		return nil
	}
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stored, fmt.Errorf("standard input line %d: %w", lineNo, err)
		}
		var md diaspora.Metadata
		if format == "json" {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if md, err = diaspora.NewMetadata(string(line)); err != nil {
				return stored, fmt.Errorf("line %d: %s", lineNo, errorText(err))
			}
		} else {
			md = diaspora.StringMetadata(string(line))
		}
		var fut diaspora.Future[diaspora.EventID]
		if partition >= 0 {
			fut = p.PushTo(partition, md, data)
		} else {
			fut = p.Push(md, data)
		}
		inflight = append(inflight, pending{line: lineNo, fut: fut})
		if len(inflight) >= produceWindow {
			if _, err := p.Flush().Wait(-1); err != nil {
				return stored, err
			}
			if err := wait(produceWindow / 2); err != nil {
				return stored, err
			}
		}
		prog.update(lineNo)
	}
	if _, err := p.Flush().Wait(-1); err != nil {
		return stored, err
	}
	return stored, wait(0)
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
