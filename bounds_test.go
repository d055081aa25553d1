package diaspora_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

// Batch sizes and batch counts beyond the documented bounds are refused by
// name, with the value and the range, before any driver sees them: their
// product sizes the producer's back-pressure and must neither overflow nor
// ask for more memory than a machine has.
func TestBatchBoundsAreCheckedByName(t *testing.T) {
	_, topic := openMemTopic(t, 1)
	bad := []struct {
		arg  diaspora.Arg
		want []string
	}{
		{diaspora.BatchSize(1 << 62), []string{"BatchSize 4611686018427387904", "[1, 1048576]"}},
		{diaspora.BatchSize(1<<20 + 1), []string{"BatchSize 1048577", "[1, 1048576]"}},
		{diaspora.BatchSize(1 << 32), []string{"BatchSize 4294967296"}},
		{diaspora.BatchSize(-2), []string{"BatchSize -2", "AdaptiveBatchSize"}},
		{diaspora.MaxNumBatches(1 << 32), []string{"MaxNumBatches 4294967296", "[1, 65536]"}},
		{diaspora.MaxNumBatches(1<<16 + 1), []string{"MaxNumBatches 65537", "[1, 65536]"}},
	}
	for _, c := range bad {
		for _, make := range []struct {
			what string
			f    func() error
		}{
			{"Producer", func() error { _, err := topic.Producer("p", c.arg); return err }},
			{"Consumer", func() error { _, err := topic.Consumer("c", c.arg); return err }},
		} {
			err := make.f()
			if !errors.Is(err, diaspora.ErrInvalidArgument) {
				t.Errorf("%s(%T(%v)): want ErrInvalidArgument, got %v", make.what, c.arg, c.arg, err)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s(%T(%v)): error %q does not say %q", make.what, c.arg, c.arg, err, w)
				}
			}
		}
	}
	for _, args := range [][]diaspora.Arg{
		{diaspora.MaxBatchSize, diaspora.MaxMaxNumBatches},
		{diaspora.BatchSize(1), diaspora.MaxNumBatches(1)},
		{diaspora.AdaptiveBatchSize, diaspora.MaxMaxNumBatches},
	} {
		p, err := topic.Producer("p", args...)
		if err != nil {
			t.Errorf("Producer(%v): the bounds themselves are allowed, got %v", args, err)
			continue
		}
		p.Close()
	}
}
