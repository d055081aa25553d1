package segment

import (
	"fmt"
	"testing"

	"github.com/tidwall/wal"
)

// Appends with group commit beside raw tidwall/wal writing the same bytes
// (one wal entry per event, batches of 100 via wal.Batch) in the same run.
// Compare the events/s metric; MB/s counts event data only.

var benchSizes = []struct {
	name string
	size int
}{{"64B", 64}, {"64KiB", 64 << 10}}

func BenchmarkAppend(b *testing.B) {
	for _, pol := range []SyncPolicy{SyncNone, SyncAlways} {
		for _, sz := range benchSizes {
			for _, batch := range []int{100, 1000} {
				if sz.size > 1024 && batch > 100 {
					continue
				}
				b.Run(fmt.Sprintf("%s/%s/batch=%d", pol, sz.name, batch), func(b *testing.B) {
					w, err := OpenWriter(b.TempDir(), Options{Sync: pol})
					if err != nil {
						b.Fatal(err)
					}
					data := payload(1, sz.size)
					evs := make([]Event, batch)
					b.SetBytes(int64(sz.size * batch))
					b.ResetTimer()
					var id uint64
					for i := 0; i < b.N; i++ {
						for k := range evs {
							evs[k] = Event{ID: id, Data: data}
							id++
						}
						if err := w.Append(evs); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				})
			}
		}
	}
}

func BenchmarkRawWAL(b *testing.B) {
	const batch = 100
	for _, noSync := range []bool{true, false} {
		pol := "sync"
		if noSync {
			pol = "none"
		}
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s/batch=%d", pol, sz.name, batch), func(b *testing.B) {
				log, err := wal.Open(b.TempDir(), &wal.Options{NoSync: noSync, SegmentSize: defaultSegmentSize, LogFormat: wal.Binary})
				if err != nil {
					b.Fatal(err)
				}
				data := payload(1, sz.size)
				var bt wal.Batch
				idx := uint64(1)
				b.SetBytes(int64(sz.size * batch))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					bt.Clear()
					for k := 0; k < batch; k++ {
						bt.Write(idx, data)
						idx++
					}
					if err := log.WriteBatch(&bt); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
				if err := log.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkStorePosition compares a durable position update (tmp, fsync,
// rename, fsync of the directory) with WritePosition (no fsync), the cost an
// Acknowledge pays with ack_sync true or false.
func BenchmarkStorePosition(b *testing.B) {
	for _, bc := range []struct {
		name  string
		store func(dir, consumer string, next uint64) error
	}{{"fsync", StorePosition}, {"nofsync", WritePosition}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				if err := bc.store(dir, "c", uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
