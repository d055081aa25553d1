package kafka_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/kafka"
)

// cluster is a Kafka-protocol cluster in the test (kfake), or the brokers
// of KAFKA_BROKERS; it returns the driver options that reach it, in a
// namespace of the test's own.
func cluster(t testing.TB) diaspora.Metadata {
	t.Helper()
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		brokers = strings.Join(c.ListenAddrs(), ",")
	}
	ns := fmt.Sprintf("t%d", time.Now().UnixNano())
	return diaspora.MustMetadata(fmt.Sprintf(`{"kafka": {"bootstrap.servers": %q}, "namespace": %q}`, brokers, ns))
}

// clusterOptions is what a test reads back from cluster's options.
type clusterOptions struct {
	Kafka struct {
		Servers string `json:"bootstrap.servers"`
	}
	Namespace string
}

func parsed(t *testing.T, opts diaspora.Metadata) clusterOptions {
	t.Helper()
	var o clusterOptions
	if err := opts.Decode(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSmoke(t *testing.T) {
	d, err := diaspora.NewDriver("kafka", cluster(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateTopic("t", diaspora.MustMetadata(`{"num_partitions": 2}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateTopic("t"); err == nil {
		t.Fatal("a second create succeeded")
	} else {
		t.Log(err)
	}
	th, err := d.OpenTopic("t")
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.Producer("p")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		id, err := p.PushTo(i%2, diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), diaspora.DataView{[]byte("hello")}).Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Log("pushed", i, "id", id)
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for ev, err := range c.Events(10 * time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		t.Log(ev.ID(), ev.Metadata(), string(ev.Data().Bytes()), ev.Partition())
		ev.Acknowledge()
		n++
	}
	if n != 10 {
		t.Fatalf("got %d", n)
	}
	l, err := d.ListTopics()
	t.Log(l, err)
}

func TestOptionsAreCheckedByName(t *testing.T) {
	for _, c := range []struct{ opts, want string }{
		{`{"kafka": {"bootstrap.servers": "x:1"}, "colour": "red"}`, `unknown key "colour"`},
		{`{"kafka": {"bootstrap.servers": "x:1", "linger.msec": 5}}`, "unknown key kafka.linger.msec"},
		{`{"kafka": {}}`, "kafka.bootstrap.servers is missing"},
		{`{"kafka": {"bootstrap.servers": "x:1", "security.protocol": "carrier-pigeon"}}`, "kafka.security.protocol"},
		{`{"kafka": {"bootstrap.servers": "x:1", "acks": 1}}`, "kafka.acks"},
		{`{"kafka": {"bootstrap.servers": "x:1", "sasl.mechanism": "ROT13"}}`, "kafka.sasl.mechanism"},
		{`{"kafka": {"bootstrap.servers": "x:1", "security.protocol": "SSL", "ssl.ca.location": "/no/such/file"}}`, "kafka.ssl.ca.location"},
		{`{"kafka": {"bootstrap.servers": "x:1", "ssl.key.location": "/k.pem"}}`, "need kafka.security.protocol SSL"},
		{`{"kafka": {"bootstrap.servers": "x:1", "compression.type": "rar"}}`, "kafka.compression.type"},
		{`{"kafka": {"bootstrap.servers": "x:1"}, "namespace": "a/b"}`, "namespace"},
	} {
		_, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(c.opts))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("options %s: %v, want an error naming %s", c.opts, err, c.want)
		}
	}
}

func TestUnreachableBrokersFailWithinTheTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(
		`{"kafka": {"bootstrap.servers": %q, "socket.connection.setup.timeout.ms": 500}}`, addr)))
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("a driver on %s: %v, want an error naming the broker", addr, err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("it took %v to fail", d)
	}
}

// TestForeignRecordIsAnErrorNamingIt: records not in the layout of
// FORMAT.md fail the pull that meets them with an error naming the topic,
// partition and offset, and the consumer goes on with the next record.
func TestForeignRecordIsAnErrorNamingIt(t *testing.T) {
	opts := cluster(t)
	d, err := diaspora.NewDriver("kafka", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateTopic("mixed"); err != nil {
		t.Fatal(err)
	}
	th, err := d.OpenTopic("mixed")
	if err != nil {
		t.Fatal(err)
	}
	o := parsed(t, opts)
	raw, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(o.Kafka.Servers, ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bad := make([]byte, 20)
	binary.LittleEndian.PutUint64(bad[0:8], 3)
	binary.LittleEndian.PutUint64(bad[8:16], 99) // 3 + 99 > the 4 bytes there
	for _, v := range [][]byte{[]byte("hello"), bad} {
		if err := raw.ProduceSync(context.Background(), &kgo.Record{Topic: o.Namespace + ".mixed", Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"ok":1}`), diaspora.DataView{[]byte("x")}).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for off, want := range []string{"shorter than the 16-byte header", "do not add up"} {
		_, err := c.Pull().Wait(10 * time.Second)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf(`topic "mixed" partition 0 offset %d`, off)) {
			t.Fatalf("record %d: %v, want an error naming topic, partition, offset and %q", off, err, want)
		}
	}
	ev, err := c.Pull().Wait(10 * time.Second)
	if err != nil || ev.ID() != 2 || string(ev.Data().Bytes()) != "x" {
		t.Fatalf("after the foreign records: %v %v", ev.ID(), err)
	}
}

// TestKcatInterop: kcat (librdkafka) reads what the driver produced, in
// the layout of FORMAT.md, and the driver consumes what kcat produced.
func TestKcatInterop(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed for the interoperability test (Debian: apt-get install kcat)")
	}
	opts := cluster(t)
	o := parsed(t, opts)
	d, err := diaspora.NewDriver("kafka", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateTopic("interop"); err != nil {
		t.Fatal(err)
	}
	th, err := d.OpenTopic("interop")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := th.Producer("p")
	if _, err := p.Push(diaspora.MustMetadata(`{"from":"go"}`), diaspora.DataView{[]byte("data from go")}).Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	topic := o.Namespace + ".interop"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-b", o.Kafka.Servers, "-C", "-t", topic, "-p", "0", "-o", "0", "-c", "1", "-e", "-f", "%s").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	md, data, end, err := decodeForTest(out)
	if err != nil || end || string(md) != `{"from":"go"}` || string(data) != "data from go" {
		t.Fatalf("kcat read %q: metadata %q, data %q, end %v, %v", out, md, data, end, err)
	}
	// kcat sends each file as one record.
	file := filepath.Join(t.TempDir(), "record")
	rec := encodeForTest(`{"from":"kcat"}`, "data from kcat")
	if err := os.WriteFile(file, rec, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, kcat, "-b", o.Kafka.Servers, "-P", "-t", topic, "-p", "0", file).CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	c, err := th.Consumer("c", diaspora.FullDataSelector)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range []string{"data from go", "data from kcat"} {
		ev, err := c.Pull().Wait(30 * time.Second)
		if err != nil || ev.ID() != diaspora.EventID(i) || string(ev.Data().Bytes()) != want {
			t.Fatalf("event %d: %v %q %v, want %q", i, ev.ID(), ev.Data().Bytes(), err, want)
		}
	}
}

// The layout of FORMAT.md, written out again here: the test checks the
// document, not the code against itself.
func encodeForTest(md, data string) []byte {
	b := make([]byte, 16, 16+len(md)+len(data))
	binary.LittleEndian.PutUint64(b[0:8], uint64(len(md)))
	binary.LittleEndian.PutUint64(b[8:16], uint64(len(data)))
	return append(append(b, md...), data...)
}

func decodeForTest(v []byte) (md, data []byte, end bool, err error) {
	if len(v) < 16 {
		return nil, nil, false, fmt.Errorf("%d bytes", len(v))
	}
	ml, dl := binary.LittleEndian.Uint64(v[0:8]), binary.LittleEndian.Uint64(v[8:16])
	if ml == ^uint64(0) && dl == ^uint64(0) {
		return nil, nil, true, nil
	}
	if 16+ml+dl != uint64(len(v)) {
		return nil, nil, false, fmt.Errorf("sizes %d + %d in %d bytes", ml, dl, len(v))
	}
	return v[16 : 16+ml], v[16+ml:], false, nil
}

// TestLargeEventsNeedTheTopicToTakeThem: an event larger than the topic
// takes fails at once with an error that says what to raise; a topic made
// with max_message_bytes streams it.
func TestLargeEventsNeedTheTopicToTakeThem(t *testing.T) {
	d, err := diaspora.NewDriver("kafka", cluster(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := d.CreateTopic("small"); err != nil {
		t.Fatal(err)
	}
	ts, _ := d.OpenTopic("small")
	ps, _ := ts.Producer("p")
	if _, err := ps.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{big}).Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "max_message_bytes") {
		t.Fatalf("a 4 MiB event to a default topic: %v, want an error naming max_message_bytes", err)
	}
	// Many small events are batched within the default bound.
	for i := range 2000 {
		ps.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{big[:1000]})
		_ = i
	}
	if _, err := ps.Flush().Wait(30 * time.Second); err != nil {
		t.Fatalf("2000 events of 1000 bytes: %v", err)
	}
	if err := d.CreateTopic("large", diaspora.MustMetadata(`{"max_message_bytes": 8388608}`)); err != nil {
		t.Fatal(err)
	}
	tl, _ := d.OpenTopic("large")
	pl, _ := tl.Producer("p")
	if _, err := pl.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{big}).Wait(30 * time.Second); err != nil {
		t.Fatalf("a 4 MiB event to a topic of max_message_bytes 8 MiB: %v", err)
	}
	c, _ := tl.Consumer("c", diaspora.FullDataSelector)
	defer c.Close()
	ev, err := c.Pull().Wait(30 * time.Second)
	if err != nil || !bytes.Equal(ev.Data().Bytes(), big) {
		t.Fatalf("the 4 MiB event came back as %d bytes, %v", ev.Data().Size(), err)
	}
}

// TestSASLCredentialsReachTheBroker: the librdkafka keys of SASL reach a
// cluster that requires them (PLAIN and SCRAM); a wrong password is an
// error at open, not a hang.
func TestSASLCredentialsReachTheBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "sim", "s3cret"), kfake.Superuser("SCRAM-SHA-256", "ana", "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := strings.Join(c.ListenAddrs(), ",")
	open := func(mech, user, pass string) error {
		d, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(
			`{"kafka": {"bootstrap.servers": %q, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": %q,
			  "sasl.username": %q, "sasl.password": %q, "socket.connection.setup.timeout.ms": 3000}}`, addr, mech, user, pass)))
		if err != nil {
			return err
		}
		defer d.Close()
		name := fmt.Sprintf("t-%s", strings.ToLower(strings.ReplaceAll(mech, "-", "")))
		if err := d.CreateTopic(name); err != nil {
			return err
		}
		th, err := d.OpenTopic(name)
		if err != nil {
			return err
		}
		p, _ := th.Producer("p")
		_, err = p.Push(diaspora.MustMetadata(`{}`), nil).Wait(10 * time.Second)
		return err
	}
	if err := open("PLAIN", "sim", "s3cret"); err != nil {
		t.Fatalf("PLAIN: %v", err)
	}
	if err := open("SCRAM-SHA-256", "ana", "other"); err != nil {
		t.Fatalf("SCRAM-SHA-256: %v", err)
	}
	start := time.Now()
	if err := open("PLAIN", "sim", "wrong"); err == nil {
		t.Fatal("a wrong password opened the driver")
	} else if time.Since(start) > 20*time.Second {
		t.Fatalf("a wrong password took %v to fail: %v", time.Since(start), err)
	}
}

// TestMarkAsCompleteFlushesAndRefuses: pushes of the topic handle still in
// the producer's buffer go out before the end markers (a consumer gets all
// of them, then the end), and later pushes of the handle are refused.
func TestMarkAsCompleteFlushesAndRefuses(t *testing.T) {
	d, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(strings.Replace(cluster(t).Dump(),
		`"kafka":{`, `"kafka":{"linger.ms":200,`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateTopic("end"); err != nil {
		t.Fatal(err)
	}
	th, _ := d.OpenTopic("end")
	p, _ := th.Producer("p")
	const n = 50
	for i := range n { // not waited: a 200 ms linger holds them in the client
		p.Push(diaspora.MustMetadata(fmt.Sprintf(`{"i":%d}`, i)), nil)
	}
	if err := th.MarkAsComplete(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(diaspora.MustMetadata(`{"late":1}`), nil).Wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "complete") {
		t.Fatalf("a push after MarkAsComplete: %v, want it refused", err)
	}
	c, _ := th.Consumer("c")
	defer c.Close()
	got := 0
	for _, err := range c.Events(10 * time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("%d events before the end, want %d", got, n)
	}
}

// TestCompressionRoundTrips: compression.type reaches the producer; the
// events come back whole.
func TestCompressionRoundTrips(t *testing.T) {
	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		d, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(strings.Replace(cluster(t).Dump(),
			`"kafka":{`, `"kafka":{"compression.type":"`+codec+`",`, 1)))
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		if err := d.CreateTopic("z"); err != nil {
			t.Fatal(err)
		}
		th, _ := d.OpenTopic("z")
		p, _ := th.Producer("p")
		data := bytes.Repeat([]byte("compressible "), 1000)
		if _, err := p.Push(diaspora.MustMetadata(`{}`), diaspora.DataView{data}).Wait(10 * time.Second); err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		c, _ := th.Consumer("c", diaspora.FullDataSelector)
		ev, err := c.Pull().Wait(10 * time.Second)
		if err != nil || !bytes.Equal(ev.Data().Bytes(), data) {
			t.Fatalf("%s: %v, %d bytes back", codec, err, ev.Data().Size())
		}
		c.Close()
		d.Close()
	}
}
