package driver_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/driver"
	"go.uber.org/goleak"
)

// newDriver opens an shm driver whose root and shm paths are private to
// the test and removed after it.
func newDriver(t testing.TB) (diaspora.Driver, diaspora.Metadata) {
	t.Helper()
	shmDir, err := os.MkdirTemp("/dev/shm", "dshm-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shmDir) })
	opts := diaspora.MustMetadata(fmt.Sprintf(`{"root_path":%q,"shm_path":%q}`, t.TempDir(), shmDir))
	d, err := diaspora.NewDriver("shm", opts)
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, opts
}

// pushNumbered pushes events {"i":from} .. {"i":to-1}, 100 bytes of data
// each, and waits until each is written.
func pushNumbered(t testing.TB, p diaspora.Producer, from, to int) {
	t.Helper()
	fs := make([]diaspora.Future[diaspora.EventID], 0, to-from)
	for i := from; i < to; i++ {
		fs = append(fs, p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{make([]byte, 100)}))
	}
	for i, f := range fs {
		if _, err := f.Wait(30 * time.Second); err != nil {
			t.Fatalf("push %d: %v", from+i, err)
		}
	}
}

// openConsumer opens a consumer that the test's end closes.
func openConsumer(t testing.TB, th diaspora.TopicHandle, name string, args ...diaspora.Arg) diaspora.Consumer {
	t.Helper()
	c, err := th.Consumer(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func createTopic(t testing.TB, d diaspora.Driver, name, options string, args ...diaspora.TopicArg) diaspora.TopicHandle {
	t.Helper()
	args = append(args, diaspora.MustMetadata(options))
	if err := d.CreateTopic(name, args...); err != nil {
		t.Fatalf("CreateTopic(%q, %s): %v", name, options, err)
	}
	th, err := d.OpenTopic(name)
	if err != nil {
		t.Fatalf("OpenTopic(%q): %v", name, err)
	}
	return th
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

func TestDriverLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d, _ := newDriver(t)
	th := createTopic(t, d, "t", `{"durability":"sync","ring_size":"1MiB","num_partitions":2}`)
	pool, err := d.MakeThreadPool(2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p", pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"a":1}`), nil).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull().Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestCreateOpenExistsList(t *testing.T) {
	d, _ := newDriver(t)
	v, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(`{"type":"schema","schema":{"type":"object","required":["x"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	createTopic(t, d, "my_topic", `{"num_partitions":3,"ring_size":"1MiB","durability":"none"}`, v)
	if err := d.CreateTopic("my_topic"); !errors.Is(err, diaspora.ErrTopicExists) {
		t.Fatalf("CreateTopic of an existing name: got %v, want ErrTopicExists", err)
	}
	if ok, err := d.TopicExists("my_topic"); !ok || err != nil {
		t.Fatalf("TopicExists(my_topic) = %v, %v; want true", ok, err)
	}
	if ok, err := d.TopicExists("other"); ok || err != nil {
		t.Fatalf("TopicExists(other) = %v, %v; want false", ok, err)
	}
	if _, err := d.OpenTopic("other"); !errors.Is(err, diaspora.ErrTopicNotFound) {
		t.Fatalf("OpenTopic(other): got %v, want ErrTopicNotFound", err)
	}
	topics, err := d.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	info, ok := topics["my_topic"]
	if !ok || len(topics) != 1 {
		t.Fatalf("ListTopics = %v, want my_topic only", topics)
	}
	var got struct {
		NumPartitions     int            `json:"num_partitions"`
		RingSize          int            `json:"ring_size"`
		Durability        string         `json:"durability"`
		Validator         map[string]any `json:"validator"`
		Serializer        map[string]any `json:"serializer"`
		PartitionSelector map[string]any `json:"partition_selector"`
	}
	if err := info.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.NumPartitions != 3 || got.RingSize != 1<<20 || got.Durability != "none" {
		t.Errorf("topic info %s: want 3 partitions, ring_size 1048576, durability none", info.Dump())
	}
	if got.Validator["type"] != "schema" || got.Validator["schema"] == nil {
		t.Errorf("validator config %v: want the schema validator's config as an object", got.Validator)
	}
	if got.Serializer["type"] != "default" || got.PartitionSelector["type"] != "default" {
		t.Errorf("serializer %v, selector %v: want objects with type default", got.Serializer, got.PartitionSelector)
	}
	th, err := d.OpenTopic("my_topic")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(th.Partitions()); n != 3 {
		t.Errorf("Partitions: %d, want 3", n)
	}
	if th.Validator().Metadata().Dump() != v.Metadata().Dump() {
		t.Errorf("validator rebuilt as %s, want %s", th.Validator().Metadata().Dump(), v.Metadata().Dump())
	}
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"y":1}`), nil).Wait(5 * time.Second); !errors.Is(err, diaspora.ErrInvalidMetadata) {
		t.Errorf("push of metadata the schema rejects: got %v, want ErrInvalidMetadata", err)
	}
}

func TestBadNamesAndOptions(t *testing.T) {
	d, opts := newDriver(t)
	for _, name := range []string{"", "a/b", "..", ".hidden", "nul\x00", strings.Repeat("x", 10000)} {
		if err := d.CreateTopic(name); !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("CreateTopic(%.20q): got %v, want ErrInvalidArgument", name, err)
		}
	}
	for _, o := range []string{`{"bogus":1}`, `{"num_partitions":"3"}`, `{"num_partitions":0}`, `{"ring_size":"12 parsecs"}`,
		`{"ring_size":1}`, `{"durability":"maybe"}`, `[1,2]`} {
		err := d.CreateTopic("t", diaspora.MustMetadata(o))
		if !errors.Is(err, diaspora.ErrInvalidArgument) {
			t.Errorf("CreateTopic with options %s: got %v, want ErrInvalidArgument", o, err)
		}
	}
	var m map[string]any
	opts.Decode(&m)
	m["surprise"] = true
	bad, _ := diaspora.MetadataOf(m)
	if _, err := diaspora.NewDriver("shm", bad); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("NewDriver with an unknown option: got %v, want an error naming it", err)
	}
}

// TestCreateRaceOneWins: many creators of one name, exactly one succeeds.
func TestCreateRaceOneWins(t *testing.T) {
	d, _ := newDriver(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, exists := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.CreateTopic("race")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, diaspora.ErrTopicExists):
				exists++
			default:
				t.Errorf("CreateTopic: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || exists != 7 {
		t.Fatalf("%d creations won and %d saw ErrTopicExists; want 1 and 7", wins, exists)
	}
}

func TestProducerConsumerNamesAndTopic(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "names", `{"ring_size":"1MiB"}`)
	p, err := th.Producer("my_producer", diaspora.BatchSize(16), diaspora.Loose)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "my_producer" || p.Topic().Name() != "names" || p.BatchSize() != 16 || p.Ordering() != diaspora.Loose {
		t.Errorf("producer reports name %q topic %q batch %v ordering %v", p.Name(), p.Topic().Name(), p.BatchSize(), p.Ordering())
	}
	c, err := th.Consumer("my_consumer")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "my_consumer" || c.Topic().Name() != "names" {
		t.Errorf("consumer reports name %q topic %q", c.Name(), c.Topic().Name())
	}
	if _, err := th.Consumer("bad", diaspora.Targets{5}); !errors.Is(err, diaspora.ErrInvalidArgument) {
		t.Errorf("consumer with target partition 5 of 1: got %v, want ErrInvalidArgument", err)
	}
}

func evenDataSelector(md diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
	var m struct {
		EventNum int `json:"event_num"`
	}
	if err := md.Decode(&m); err != nil {
		return diaspora.DataDescriptor{}, err
	}
	if m.EventNum%2 == 0 {
		return d, nil
	}
	return diaspora.DataDescriptor{}, nil
}

// TestPushPullMatrix is the upstream suite's main case: 100 events pushed
// under each batch size, thread count and ordering, read back in order with
// metadata intact and data for even events only.
func TestPushPullMatrix(t *testing.T) {
	for _, batch := range []diaspora.BatchSize{diaspora.AdaptiveBatchSize, 10} {
		for _, threads := range []diaspora.ThreadCount{0, 1, 2} {
			for _, ordering := range []diaspora.Ordering{diaspora.Strict, diaspora.Loose} {
				t.Run(fmt.Sprintf("batch=%v/threads=%d/%v", batch, threads, ordering), func(t *testing.T) {
					testPushPull(t, batch, threads, ordering)
				})
			}
		}
	}
}

func testPushPull(t *testing.T, batch diaspora.BatchSize, threads diaspora.ThreadCount, ordering diaspora.Ordering) {
	const n = 100
	d, _ := newDriver(t)
	th := createTopic(t, d, "matrix", `{"ring_size":"1MiB","durability":"async"}`)
	pool, err := d.MakeThreadPool(threads)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("producer", batch, pool, ordering)
	if err != nil {
		t.Fatal(err)
	}
	futures := make([]diaspora.Future[diaspora.EventID], n)
	for i := 0; i < n; i++ {
		md := diaspora.MustMetadata(fmt.Sprintf(`{"event_num":%d}`, i))
		data := []byte(fmt.Sprintf("This is data for event %d", i))
		futures[i] = p.Push(md, diaspora.DataView{data})
	}
	if _, err := p.Flush().Wait(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	ids := map[uint64]bool{}
	for i, f := range futures {
		id, err := f.Wait(10 * time.Second)
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if ordering == diaspora.Strict && id != uint64(i) {
			t.Fatalf("push %d got ID %d; strict ordering wants %d", i, id, i)
		}
		ids[id] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct IDs for %d pushes", len(ids), n)
	}
	c, err := th.Consumer("consumer", diaspora.DataSelector(evenDataSelector), diaspora.BytesAllocator)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		ev, err := c.Pull().Wait(10 * time.Second)
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if ev.ID() != uint64(i) {
			t.Fatalf("pull %d: ID %d, want %d", i, ev.ID(), i)
		}
		var m struct {
			EventNum int `json:"event_num"`
		}
		if err := ev.Metadata().Decode(&m); err != nil {
			t.Fatal(err)
		}
		if ordering == diaspora.Strict && m.EventNum != i {
			t.Fatalf("event %d carries event_num %d", i, m.EventNum)
		}
		seen[m.EventNum] = true
		want := ""
		if m.EventNum%2 == 0 {
			want = fmt.Sprintf("This is data for event %d", m.EventNum)
		}
		if got := string(ev.Data().Bytes()); got != want {
			t.Fatalf("event %d data %q, want %q", m.EventNum, got, want)
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != n {
		t.Fatalf("saw %d distinct events, want %d", len(seen), n)
	}
	if _, err := c.Pull().Wait(50 * time.Millisecond); !errors.Is(err, diaspora.ErrTimeout) {
		t.Fatalf("pull past the end: got %v, want ErrTimeout", err)
	}
}

// TestDataSelection covers the five selection cases on one 52-byte event
// pushed as two segments.
func TestDataSelection(t *testing.T) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	cases := []struct {
		name string
		sel  diaspora.DataSelector
		want string
	}{
		{"full", diaspora.FullDataSelector, alphabet},
		{"none", func(diaspora.Metadata, diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return diaspora.DataDescriptor{}, nil
		}, ""},
		{"sub", func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return d.SubView(13, 26)
		}, "nopqrstuvwxyzABCDEFGHIJKLM"},
		{"strided", func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return d.StridedView(13, 3, 4, 2)
		}, "nopqtuvwzABC"},
		{"unstructured", func(_ diaspora.Metadata, d diaspora.DataDescriptor) (diaspora.DataDescriptor, error) {
			return d.UnstructuredView(diaspora.Segment{Offset: 3, Size: 6}, diaspora.Segment{Offset: 15, Size: 4}, diaspora.Segment{Offset: 27, Size: 8})
		}, "defghipqrsBCDEFGHI"},
	}
	d, _ := newDriver(t)
	th := createTopic(t, d, "select", `{"ring_size":"1MiB"}`)
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"kind":"alphabet"}`), diaspora.DataView{[]byte(alphabet[:20]), []byte(alphabet[20:])}).Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		for _, alloc := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/alloc=%v", tc.name, alloc), func(t *testing.T) {
				args := []diaspora.Arg{tc.sel}
				if alloc {
					args = append(args, diaspora.BytesAllocator)
				}
				c, err := th.Consumer("c-"+tc.name+fmt.Sprint(alloc), args...)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ev, err := c.Pull().Wait(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if got := string(ev.Data().Bytes()); got != tc.want {
					t.Fatalf("selected %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// TestConcurrentStreams: producer and consumer at the same time, a fast
// producer with a slow consumer, three producers with one consumer.
func TestConcurrentStreams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		producers int
		n         int
		slow      bool
	}{{"one-one", 1, 1000, false}, {"slow-consumer", 1, 300, true}, {"three-one", 3, 1000, false}} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t)
			// A small ring, so that a slow consumer makes the producer wait.
			th := createTopic(t, d, "stream", `{"ring_size":"64KiB","durability":"none"}`)
			c, err := th.Consumer("c", diaspora.FullDataSelector, diaspora.BytesAllocator)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, tc.producers)
			for w := 0; w < tc.producers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					p, err := th.Producer(fmt.Sprintf("p%d", w))
					if err != nil {
						errs <- err
						return
					}
					defer p.Close()
					payload := make([]byte, 700)
					for i := 0; i < tc.n; i++ {
						md := diaspora.MustMetadata(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
						if _, err := p.Push(md, diaspora.DataView{payload}).Wait(20 * time.Second); err != nil {
							errs <- err
							return
						}
					}
				}(w)
			}
			last := make([]int, tc.producers)
			for i := range last {
				last[i] = -1
			}
			for k := 0; k < tc.n*tc.producers; k++ {
				ev, err := c.Pull().Wait(20 * time.Second)
				if err != nil {
					t.Fatalf("pull %d: %v", k, err)
				}
				var m struct{ W, I int }
				if err := ev.Metadata().Decode(&m); err != nil {
					t.Fatal(err)
				}
				if m.I != last[m.W]+1 {
					t.Fatalf("producer %d: event %d after %d", m.W, m.I, last[m.W])
				}
				last[m.W] = m.I
				if tc.slow && k%10 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

func TestCompleteEndsTheStream(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "done", `{"ring_size":"1MiB","num_partitions":2}`)
	p, _ := th.Producer("p")
	for i := 0; i < 4; i++ {
		p.Push(diaspora.MustMetadata(`{}`), nil)
	}
	if _, err := p.Flush().Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("c")
	var ids []uint64
	for {
		ev, err := c.Pull().Wait(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", ids, err)
		}
		if ev.ID() == diaspora.NoMoreEvents {
			break
		}
		ids = append(ids, ev.ID())
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if fmt.Sprint(ids) != "[0 0 1 1]" {
		t.Fatalf("IDs before NoMoreEvents: %v, want two events in each of 2 partitions", ids)
	}
}

// A claim of a strictly ordered producer whose pushes run on a thread
// pool comes after the pushes made before it, also those the pool's
// threads had not processed yet when the claim was made.
func TestClaimComesAfterPushesStillOnThePool(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "zc", `{"ring_size":"4MiB","durability":"none"}`)
	pool, err := d.MakeThreadPool(2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p", pool)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("c")
	for round := range 20 {
		for i := range 200 {
			p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"r":%d,"i":%d}`, round, i)), nil)
		}
		cl, err := p.Claim(diaspora.MustMetadata(fmt.Sprintf(`{"r":%d,"claim":true}`, round)), 8)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Commit().Wait(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		for i := range 201 {
			ev, err := c.Pull().Wait(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"r":%d,"i":%d}`, round, i)
			if i == 200 {
				want = fmt.Sprintf(`{"r":%d,"claim":true}`, round)
			}
			if got := ev.Metadata().Dump(); got != want {
				t.Fatalf("round %d: event %d is %s, want %s", round, i, got, want)
			}
		}
	}
}

func TestClaimZeroCopyProduceAndConsume(t *testing.T) {
	d, opts := newDriver(t)
	th := createTopic(t, d, "zc", `{"ring_size":"1MiB"}`)
	p, _ := th.Producer("p")
	cl, err := p.Claim(diaspora.MustMetadata(`{"n":1}`), 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cl.Bytes() {
		cl.Bytes()[i] = byte(i)
	}
	if _, err := cl.Commit().Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ab, err := p.Claim(diaspora.MustMetadata(`{"n":2}`), 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"n":3}`), diaspora.DataView{[]byte("x")}).Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ := th.Consumer("c", diaspora.FullDataSelector)
	ev, err := c.Pull().Wait(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	data := ev.Data().Bytes()
	if len(data) != 1000 || data[999] != byte(999%256) {
		t.Fatalf("claimed event arrived with %d bytes", len(data))
	}
	var shm string
	var m map[string]string
	opts.Decode(&m)
	shm = m["shm_path"]
	if !inMapping(t, data, shm) {
		t.Fatalf("zero-copy Data() at %p is not inside a ring mapping under %s", &data[0], shm)
	}
	ev2, err := c.Pull().Wait(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := ev2.Metadata().Dump(); got != `{"n":3}` {
		t.Fatalf("after an aborted claim got %s, want the next push", got)
	}
}

// inMapping says whether b lies in a mapping of a file under dir, from
// /proc/self/maps.
func inMapping(t *testing.T, b []byte, dir string) bool {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	addr := uintptr(0)
	if len(b) > 0 {
		addr = uintptrOf(b)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[5], filepath.Clean(dir)+"/") {
			continue
		}
		var lo, hi uintptr
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err == nil && addr >= lo && addr < hi {
			return true
		}
	}
	return false
}

// TestNewConsumerReadsLogThenRing: a ring that wrapped many times still
// gives a new consumer name every event from 0, from the log and then from
// the ring, without a gap or a repeat at the seam.
func TestNewConsumerReadsLogThenRing(t *testing.T) {
	const n = 5000
	d, _ := newDriver(t)
	th := createTopic(t, d, "history", `{"ring_size":"64KiB","durability":"async"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(32))
	for i := 0; i < n; i++ {
		p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{make([]byte, 100)})
	}
	if _, err := p.Flush().Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		c, err := th.Consumer(name, diaspora.FullDataSelector)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			ev, err := c.Pull().Wait(10 * time.Second)
			if err != nil {
				t.Fatalf("%s: pull %d: %v", name, i, err)
			}
			if ev.ID() != uint64(i) || ev.Data().Size() != 100 {
				t.Fatalf("%s: pull %d got ID %d with %d bytes", name, i, ev.ID(), ev.Data().Size())
			}
			if i%1000 == 999 {
				ev.Acknowledge()
			}
		}
		c.Close()
	}
	latest, err := th.Consumer("late", diaspora.MustMetadata(`{"start":"latest"}`))
	if err != nil {
		t.Fatal(err)
	}
	p.Push(diaspora.MustMetadata(`{"i":-1}`), nil)
	p.Flush().Wait(5 * time.Second)
	ev, err := latest.Pull().Wait(5 * time.Second)
	if err != nil || ev.ID() != n {
		t.Fatalf("a consumer starting at the latest got %v, %v; want event %d", ev.ID(), err, n)
	}
}

// A new name reading the log of a topic whose ring wrapped takes the ring
// again as soon as the ring holds its next event: its reader, pinned where
// it attached, no longer holds the ring's space for the rest of the log.
// Pushes made meanwhile (here by the consumer's own goroutine) get room.
func TestLateConsumerReadingTheLogLetsProducersPush(t *testing.T) {
	const n = 3000
	d, _ := newDriver(t)
	th := createTopic(t, d, "history", `{"ring_size":"64KiB","durability":"async","push_timeout":"3s"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(32))
	pushNumbered(t, p, 0, n)
	c := openConsumer(t, th, "late", diaspora.FullDataSelector)
	for want := 0; want < n+100; want++ {
		if want == n {
			pushNumbered(t, p, n, n+100) // while the late consumer reads
		}
		ev, err := c.Pull().Wait(5 * time.Second)
		if err != nil || ev.ID() != uint64(want) || ev.Metadata().Dump() != fmt.Sprintf(`{"i":%d}`, want) {
			t.Fatalf("Pull: %d %s, %v; want event %d", ev.ID(), ev.Metadata(), err, want)
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPinningConsumerFailsPushNamingIt: a zero-copy consumer that never
// acknowledges holds the ring; a push then fails after its timeout with an
// error that names the consumer, rather than hanging.
func TestPinningConsumerFailsPushNamingIt(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "pinned", `{"ring_size":"64KiB","durability":"none","push_timeout":"200ms"}`)
	c, err := th.Consumer("hoarder", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("p")
	payload := make([]byte, 1000)
	var pushErr error
	for i := 0; i < 200 && pushErr == nil; i++ {
		_, pushErr = p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{payload}).Wait(5 * time.Second)
		if i%10 == 0 {
			if _, err := c.Pull().Wait(time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pushErr == nil || !strings.Contains(pushErr.Error(), "hoarder") {
		t.Fatalf("push into a ring pinned by a zero-copy consumer: got %v, want an error naming \"hoarder\"", pushErr)
	}
	// Acknowledging frees the space.
	ev, err := c.Pull().Wait(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev.Acknowledge()
	for {
		ev, err := c.Pull().Wait(100 * time.Millisecond)
		if err != nil {
			break
		}
		ev.Acknowledge()
	}
	if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{payload}).Wait(5 * time.Second); err != nil {
		t.Fatalf("push after the consumer acknowledged: %v", err)
	}
}

// TestConcurrentPushersKeepEveryEvent: many goroutines pushing through a
// pool into small fixed batches, while the queue is swapped under them:
// every push completes with its own ID.
func TestConcurrentPushersKeepEveryEvent(t *testing.T) {
	const writers, n = 4, 3000
	d, _ := newDriver(t)
	th := createTopic(t, d, "many", `{"ring_size":"4MiB","durability":"none"}`)
	pool, _ := d.MakeThreadPool(2)
	for _, batch := range []diaspora.BatchSize{3, diaspora.AdaptiveBatchSize} {
		p, err := th.Producer(fmt.Sprint("p", batch), batch, pool, diaspora.Loose)
		if err != nil {
			t.Fatal(err)
		}
		futures := make([][]diaspora.Future[diaspora.EventID], writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i++ {
					futures[w] = append(futures[w], p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{[]byte("x")}))
				}
			}()
		}
		wg.Wait()
		if _, err := p.Flush().Wait(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		ids := map[uint64]bool{}
		for _, fs := range futures {
			for _, f := range fs {
				id, err := f.Wait(10 * time.Second)
				if err != nil {
					t.Fatalf("batch %v: %v", batch, err)
				}
				if ids[id] {
					t.Fatalf("batch %v: ID %d given twice", batch, id)
				}
				ids[id] = true
			}
		}
		if len(ids) != writers*n {
			t.Fatalf("batch %v: %d IDs for %d pushes", batch, len(ids), writers*n)
		}
	}
}

// TestMultiPartitionConsumerSleepsOnAllRings: a consumer of four partitions,
// asleep in Pull, gets an event pushed to any of them.
func TestMultiPartitionConsumerSleepsOnAllRings(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "four", `{"ring_size":"64KiB","num_partitions":4,"durability":"none"}`)
	c, err := th.Consumer("c", diaspora.MustMetadata(`{"spin":"0s"}`))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("p")
	for _, part := range []int{3, 1, 0, 2} {
		got := make(chan error, 1)
		go func() {
			ev, err := c.Pull().Wait(10 * time.Second)
			if err == nil && ev.Metadata().Dump() != fmt.Sprintf(`{"to":%d}`, part) {
				err = fmt.Errorf("got %s", ev.Metadata().Dump())
			}
			got <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the consumer fall asleep
		if _, err := p.PushTo(part, diaspora.MustMetadata(fmt.Sprintf(`{"to":%d}`, part)), nil).Wait(time.Second); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("event pushed to partition %d: %v", part, err)
		}
	}
}

// TestCloseEndsAPullWithoutTimeout: a consumer closed while a goroutine
// waits in Pull without a timeout: the Pull ends with ErrClosed and Close
// returns.
func TestCloseEndsAPullWithoutTimeout(t *testing.T) {
	d, _ := newDriver(t)
	th := createTopic(t, d, "idle", `{"ring_size":"64KiB","durability":"none"}`)
	for _, n := range []int{1, 2} {
		th2 := th
		if n == 2 {
			th2 = createTopic(t, d, "idle2", `{"ring_size":"64KiB","durability":"none","num_partitions":2}`)
		}
		c, err := th2.Consumer("c")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() { _, err := c.Pull().Wait(-1); got <- err }()
		time.Sleep(50 * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-got:
			if !errors.Is(err, diaspora.ErrClosed) {
				t.Fatalf("%d partitions: Pull on a closed consumer: got %v, want ErrClosed", n, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d partitions: Pull(-1) still waiting 10 s after Close", n)
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	}
}

// TestTopicModeReachesEveryFile: a topic created with mode 0660 gets rings,
// log segments and stored positions a group can use; the default keeps
// them all private.
func TestTopicModeReachesEveryFile(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{{"0660", "-rw-rw----"}, {"", "-rw-------"}} {
		d, opts := newDriver(t)
		o := `{"ring_size":"64KiB","durability":"sync"}`
		if tc.mode != "" {
			o = fmt.Sprintf(`{"ring_size":"64KiB","durability":"sync","mode":%q}`, tc.mode)
		}
		th := createTopic(t, d, "shared", o)
		p, _ := th.Producer("p")
		if _, err := p.Push(diaspora.MustMetadata(`{}`), nil).Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		c, _ := th.Consumer("c")
		ev, err := c.Pull().Wait(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := ev.Acknowledge(); err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		opts.Decode(&m)
		part := filepath.Join(m["root_path"], "topics", "shared", "partitions", "0")
		files, _ := filepath.Glob(filepath.Join(m["shm_path"], "dshm.*"))
		segs, _ := filepath.Glob(filepath.Join(part, "0*"))
		files = append(append(files, segs...), filepath.Join(part, "positions", "c"),
			filepath.Join(m["root_path"], "topics", "shared", "topic.json"))
		if len(files) < 3 {
			t.Fatalf("found only %v", files)
		}
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm().String(); got != tc.want {
				t.Errorf("mode %q: %s has %s, want %s", tc.mode, f, got, tc.want)
			}
		}
		d.Close()
	}
}

// TestDataOnGoHeapSaysWhereTheDataIs: an event read back from the log has
// its data in a Go buffer and says so (the C library pins it while C holds
// it); one read in place from the ring does not.
func TestDataOnGoHeapSaysWhereTheDataIs(t *testing.T) {
	const n = 2000
	d, opts := newDriver(t)
	var o struct {
		Shm string `json:"shm_path"`
	}
	if err := opts.Decode(&o); err != nil {
		t.Fatal(err)
	}
	th := createTopic(t, d, "where", `{"ring_size":"64KiB","durability":"async"}`)
	p, _ := th.Producer("p", diaspora.BatchSize(32))
	pushNumbered(t, p, 0, n)
	c := openConsumer(t, th, "c", diaspora.FullDataSelector)
	type heapReporter interface{ DataOnGoHeap() bool }
	for i := 0; i < n; i++ {
		ev, err := c.Pull().Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := ev.Interface().(heapReporter)
		if !ok {
			t.Fatalf("the shm driver's events have no DataOnGoHeap")
		}
		inRing := inMapping(t, ev.Data()[0], o.Shm)
		if h.DataOnGoHeap() == inRing {
			t.Fatalf("event %d: DataOnGoHeap %v, but the data is in the ring: %v", i, h.DataOnGoHeap(), inRing)
		}
		if i == 0 && inRing {
			t.Fatal("event 0 should have been read from the log: the 64 KiB ring wrapped")
		}
	}
	// Without a log every event is read in place.
	tr := createTopic(t, d, "ring-only", `{"durability":"none"}`)
	pr, _ := tr.Producer("p")
	if _, err := pr.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{make([]byte, 100)}).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	cr, err := tr.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	ev, err := cr.Pull().Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Interface().(heapReporter).DataOnGoHeap() || !inMapping(t, ev.Data()[0], o.Shm) {
		t.Fatalf("an event of a ring-only topic: DataOnGoHeap %v, in the ring %v", ev.Interface().(heapReporter).DataOnGoHeap(), inMapping(t, ev.Data()[0], o.Shm))
	}
}
