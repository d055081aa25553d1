package driver_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

// A bad consumer or producer name is called a consumer or producer name in
// the error, once.
func TestBadClientNamesSayWhichKind(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"none","ring_size":"1MiB"}`)
	for _, name := range []string{"", "a/b", ".hidden"} {
		_, cerr := th.Consumer(name)
		_, perr := th.Producer(name)
		for kind, err := range map[string]error{"consumer": cerr, "producer": perr} {
			if !errors.Is(err, diaspora.ErrInvalidArgument) {
				t.Errorf("%s %q: want ErrInvalidArgument, got %v", kind, name, err)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, kind+" name") || strings.Contains(msg, "topic name") || strings.Count(msg, " name") != 1 {
				t.Errorf("%s %q: error %q should call it a %s name, once", kind, name, msg, kind)
			}
		}
	}
}
