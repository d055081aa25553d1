package driver_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
)

// MakeProducer called directly (past the root package's bounds) must not
// panic on a batch size whose back-pressure bound overflows, nor turn an
// overflow to 0 into an unbuffered channel that blocks every push: it
// clamps the bound, and refuses values that are not sizes at all.
func TestMakeProducerBoundsBackPressure(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	pool, err := d.MakeThreadPool(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		batch diaspora.BatchSize
		max   diaspora.MaxNumBatches
	}{
		{1 << 62, 2},       // product negative: makechan panicked
		{1 << 32, 1 << 32}, // product 0: an unbuffered channel, Push blocked
		{1, 1 << 62},
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("MakeProducer(BatchSize %d, MaxNumBatches %d) panicked: %v", c.batch, c.max, r)
				}
			}()
			p, err := th.Interface().MakeProducer("p", c.batch, c.max, diaspora.Strict, pool.Interface(), diaspora.Metadata{})
			if err != nil {
				t.Fatalf("MakeProducer(BatchSize %d, MaxNumBatches %d): %v", c.batch, c.max, err)
			}
			done := make(chan error, 1)
			go func() {
				f := p.Push(diaspora.MustMetadata(`{"k":1}`), nil, 0)
				if _, err := p.Flush().Wait(5 * time.Second); err != nil {
					done <- err
					return
				}
				_, err := f.Wait(5 * time.Second)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("BatchSize %d, MaxNumBatches %d: push: %v", c.batch, c.max, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("BatchSize %d, MaxNumBatches %d: push blocked", c.batch, c.max)
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	for _, c := range []struct {
		batch diaspora.BatchSize
		max   diaspora.MaxNumBatches
	}{{0, 2}, {-5, 2}, {8, 0}} {
		_, err := th.Interface().MakeProducer("p", c.batch, c.max, diaspora.Strict, nil, diaspora.Metadata{})
		if !errors.Is(err, diaspora.ErrInvalidArgument) || !strings.Contains(err.Error(), "BatchSize") {
			t.Errorf("MakeProducer(BatchSize %d, MaxNumBatches %d): want ErrInvalidArgument naming BatchSize, got %v", c.batch, c.max, err)
		}
	}
}
