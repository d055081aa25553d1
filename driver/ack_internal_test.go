package driver

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

func internalConsumer(tb testing.TB, opts string) *consumer {
	tb.Helper()
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-ack-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(shmDir) })
	d, err := Open(diaspora.MustMetadata(fmt.Sprintf(`{"root_path":%q,"shm_path":%q}`, tb.TempDir(), shmDir)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	if err := d.CreateTopic("t", diaspora.MustMetadata(`{"durability":"none","ring_size":"64KiB"}`),
		diaspora.Validator{}.Interface(), diaspora.PartitionSelector{}.Interface(), diaspora.Serializer{}.Interface()); err != nil {
		tb.Fatal(err)
	}
	th, err := d.OpenTopic("t")
	if err != nil {
		tb.Fatal(err)
	}
	ci, err := th.MakeConsumer("c", diaspora.AdaptiveBatchSize, 2, nil, nil, nil, nil, diaspora.MustMetadata(opts))
	if err != nil {
		tb.Fatal(err)
	}
	return ci.(*consumer)
}

// BenchmarkAcknowledge measures Acknowledge of a new event each time: by
// default a store into the mapped position, made durable in the
// background; with ack_sync, an msync of it before returning.
func BenchmarkAcknowledge(b *testing.B) {
	for _, opts := range []string{`{}`, `{"ack_sync":true}`} {
		b.Run(opts, func(b *testing.B) {
			cp := internalConsumer(b, opts).parts[0]
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := cp.acknowledge(uint64(i), 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An acknowledged position is made durable in the background within
// ack_interval (the page is synced), and at once with ack_sync.
func TestAcknowledgedPositionIsSyncedWithinTheInterval(t *testing.T) {
	cp := internalConsumer(t, `{"ack_interval":"20ms"}`).parts[0]
	if err := cp.acknowledge(41, 0); err != nil {
		t.Fatal(err)
	}
	if !cp.pos.Dirty() {
		t.Fatal("right after Acknowledge the position should wait for its sync")
	}
	deadline := time.Now().Add(2 * time.Second)
	for cp.pos.Dirty() {
		if time.Now().After(deadline) {
			t.Fatal("the position was not synced within 2s of an ack_interval of 20ms")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sync := internalConsumer(t, `{"ack_sync":true,"ack_interval":"1h"}`).parts[0]
	if err := sync.acknowledge(7, 0); err != nil {
		t.Fatal(err)
	}
	if sync.pos.Dirty() {
		t.Fatal("with ack_sync, Acknowledge returned before the position was synced")
	}
}
