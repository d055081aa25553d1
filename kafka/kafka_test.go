package kafka_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

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
