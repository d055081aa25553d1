package driver_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

// Out-of-range numbers say they are out of range and what the range is,
// rather than leaking strconv's error or calling an integer "not an integer".
func TestOutOfRangeOptionsSayTheRange(t *testing.T) {
	d, _ := newDriver(t)
	for _, c := range []struct {
		options string
		want    []string
	}{
		{`{"num_partitions":9223372036854775808}`, []string{"num_partitions", "out of range", "[1, 1024]", "9223372036854775808"}},
		{`{"num_partitions":99999999999999999999999}`, []string{"num_partitions", "out of range", "[1, 1024]"}},
		{`{"num_partitions":1e30}`, []string{"num_partitions", "out of range", "[1, 1024]"}},
		{`{"num_partitions":2000}`, []string{"num_partitions", "out of range", "[1, 1024]", "2000"}},
		{`{"reader_slots":18446744073709551616}`, []string{"reader_slots", "out of range", "[1, 4096]"}},
		{`{"ring_size":"99999999999999999999GiB"}`, []string{"ring_size", "out of range", "4611686018427387904 bytes"}},
		{`{"segment_size":"9999999999GiB"}`, []string{"segment_size", "out of range", "4611686018427387904 bytes"}},
		{`{"retention_bytes":99999999999999999999}`, []string{"retention_bytes", "out of range", "4611686018427387904 bytes"}},
	} {
		err := d.CreateTopic("t", diaspora.MustMetadata(c.options))
		if !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("CreateTopic(%s): want ErrInvalidArgument, got %v", c.options, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CreateTopic(%s): error %q does not say %q", c.options, err, w)
			}
		}
		for _, leak := range []string{"strconv", "must be an integer"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("CreateTopic(%s): error %q says %q", c.options, err, leak)
			}
		}
	}
	// Integers still read as before, and a non-integer is still called one.
	for name, ok := range map[string]string{"ok1": `{"num_partitions":3}`, "ok2": `{"num_partitions":2e0,"ring_size":65536}`} {
		if err := d.CreateTopic(name, diaspora.MustMetadata(ok)); err != nil {
			t.Errorf("CreateTopic(%s): %v", ok, err)
		}
	}
	if err := d.CreateTopic("t", diaspora.MustMetadata(`{"num_partitions":1.5}`)); err == nil || !strings.Contains(err.Error(), "must be an integer") {
		t.Errorf("CreateTopic(num_partitions 1.5): want \"must be an integer\", got %v", err)
	}
	_, err := driver.ParseSize("99999999999999999999GiB")
	if err == nil || !strings.Contains(err.Error(), "out of range") || strings.Contains(err.Error(), "strconv") {
		t.Errorf(`ParseSize("99999999999999999999GiB"): want out of range, got %v`, err)
	}
}
