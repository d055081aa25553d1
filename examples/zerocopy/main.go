// Command zerocopy streams large frames without copying them through the
// API: the producer claims space for a frame in the ring, writes the frame
// there in place and commits it; the consumer, which selects the data but
// has no allocator, gets Data() views that point into the shared memory.
//
//	go run ./examples/zerocopy                    # both sides, in one process
//	go run ./examples/zerocopy -role consumer &   # or two processes
//	go run ./examples/zerocopy -role producer
//
// A zero-copy view is valid until the event is acknowledged (or the
// consumer closes); until then the consumer holds that ring space, so it
// must acknowledge each frame when done with it, or producers block.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver" // registers the "shm" driver
)

// An event (its data, metadata and a 32-byte header) may take up to half of
// the ring; a zero-copy consumer holds each frame until it acknowledges it.
const topicOptions = `{"num_partitions":1,"ring_size":"64MiB","durability":"none"}`

func main() {
	role := flag.String("role", "both", "producer, consumer, or both (two goroutines of this process)")
	root := flag.String("root", defaultRoot(), "root path of the driver")
	shm := flag.String("shm", "", "where the rings go (default /dev/shm)")
	topicName := flag.String("topic", "frames", "topic name; created if it does not exist")
	frames := flag.Int("frames", 50, "number of frames")
	size := flag.Int("size", 4<<20, "bytes per frame")
	flag.Parse()
	log.SetFlags(0)
	d, topic, err := openTopic(*root, *shm, *topicName)
	if err != nil {
		log.Fatal("zerocopy: ", err)
	}
	var perr, cerr error
	var wg sync.WaitGroup
	if *role == "producer" || *role == "both" {
		wg.Go(func() { perr = produce(topic, *frames, *size) })
	}
	if *role == "consumer" || *role == "both" {
		wg.Go(func() { cerr = consume(topic, *frames) })
	}
	if *role != "producer" && *role != "consumer" && *role != "both" {
		perr = fmt.Errorf("unknown -role %q", *role)
	}
	wg.Wait()
	if err := errors.Join(perr, cerr, d.Close()); err != nil {
		log.Fatal("zerocopy: ", err)
	}
}

func defaultRoot() string {
	if r := os.Getenv("DIASPORA_ROOT"); r != "" {
		return r
	}
	return filepath.Join(os.TempDir(), "diaspora-examples")
}

// openTopic opens the driver and the topic, creating it unless it exists
// (ErrTopicExists: another process was first).
func openTopic(root, shm, name string) (diaspora.Driver, diaspora.TopicHandle, error) {
	opts := map[string]string{"root_path": root}
	if shm != "" {
		opts["shm_path"] = shm
	}
	md, err := diaspora.MetadataOf(opts)
	if err != nil {
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	d, err := diaspora.NewDriver("shm", md)
	if err != nil {
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	err = d.CreateTopic(name, diaspora.MustMetadata(topicOptions))
	if err != nil && !errors.Is(err, diaspora.ErrTopicExists) {
		d.Close()
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	topic, err := d.OpenTopic(name)
	if err != nil {
		d.Close()
		return diaspora.Driver{}, diaspora.TopicHandle{}, err
	}
	return d, topic, nil
}

func produce(topic diaspora.TopicHandle, frames, size int) (err error) {
	p, err := topic.Producer("zerocopy-producer")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	start := time.Now()
	for i := range frames {
		md := diaspora.MustMetadata(fmt.Sprintf(`{"frame":%d,"size":%d}`, i, size))
		// Claim reserves the frame's bytes in the ring; nothing is visible
		// to consumers until Commit.
		claim, err := p.Claim(md, size)
		if err != nil {
			return err
		}
		render(claim.Bytes(), i) // write the frame in place
		if _, err := claim.Commit().Wait(30 * time.Second); err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("producer: wrote %d frames of %d bytes in place in %v (%.0f MB/s)\n",
		frames, size, elapsed.Round(time.Millisecond), float64(frames*size)/1e6/elapsed.Seconds())
	return nil
}

// render fills a frame: its number, then bytes derived from it, then the
// CRC-32 of everything before it in the last 4 bytes.
func render(b []byte, frame int) {
	binary.LittleEndian.PutUint64(b, uint64(frame))
	for j := 8; j < len(b)-4; j++ {
		b[j] = byte(frame + j)
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
}

func consume(topic diaspora.TopicHandle, frames int) (err error) {
	// FullDataSelector and no DataAllocator: zero-copy. We acknowledge
	// every frame, to hand its space back to the ring: an acknowledgement
	// is a store into a mapped position file, made durable in the
	// background.
	c, err := topic.Consumer("zerocopy-consumer", diaspora.FullDataSelector)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	var start time.Time
	got := 0
	for ev, err := range c.Events(10 * time.Second) {
		if err != nil {
			return err
		}
		if got == 0 {
			start = time.Now()
		}
		view := ev.Data() // segments in the shared memory of the ring
		var md struct{ Frame, Size int }
		if err := ev.Metadata().Decode(&md); err != nil {
			return err
		}
		if view.Size() != md.Size {
			return fmt.Errorf("frame %d: %d bytes, want %d", md.Frame, view.Size(), md.Size)
		}
		if err := check(view, md.Frame); err != nil {
			return err
		}
		// From here on view must not be used: the ring may reuse its space.
		if err := ev.Acknowledge(); err != nil {
			return err
		}
		if got++; got == frames {
			break
		}
	}
	if got == 0 {
		return errors.New("no frame came within 10s")
	}
	elapsed := time.Since(start)
	fmt.Printf("consumer: checked %d frames in the ring, zero-copy, in %v\n", got, elapsed.Round(time.Millisecond))
	return nil
}

// check verifies a frame's number and CRC, reading it where it lies: a
// frame that wraps around the end of the ring is two segments.
func check(view diaspora.DataView, frame int) error {
	crc, n := uint32(0), view.Size()
	var head, tail [8]byte
	view.Read(head[:], 0)
	view.Read(tail[:4], n-4)
	done := 0
	for _, seg := range view {
		seg = seg[:min(len(seg), n-4-done)]
		crc = crc32.Update(crc, crc32.IEEETable, seg)
		if done += len(seg); done == n-4 {
			break
		}
	}
	if got := binary.LittleEndian.Uint64(head[:]); got != uint64(frame) {
		return fmt.Errorf("frame %d carries number %d", frame, got)
	}
	if want := binary.LittleEndian.Uint32(tail[:4]); crc != want {
		return fmt.Errorf("frame %d: CRC %08x, want %08x", frame, crc, want)
	}
	return nil
}
