package kafka_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/diaspora-shm/diaspora"
	_ "github.com/diaspora-shm/diaspora/kafka"
)

// A stream through Kafka, with the API of the shm driver. The cluster here
// is kfake, inside the program; give a real one's brokers instead.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	d, err := diaspora.NewDriver("kafka", diaspora.MustMetadata(fmt.Sprintf(
		`{"kafka": {"bootstrap.servers": %q}, "namespace": "example"}`, strings.Join(cluster.ListenAddrs(), ","))))
	if err != nil {
		panic(err)
	}
	defer d.Close()
	if err := d.CreateTopic("frames", diaspora.MustMetadata(`{"num_partitions": 2}`)); err != nil {
		panic(err)
	}
	topic, _ := d.OpenTopic("frames")

	producer, _ := topic.Producer("simulation")
	for i := range 3 {
		md := diaspora.MustMetadata(fmt.Sprintf(`{"frame": %d}`, i))
		if _, err := producer.PushTo(0, md, diaspora.DataView{[]byte("pixels")}).Wait(10 * time.Second); err != nil {
			panic(err)
		}
	}
	producer.Close()
	topic.MarkAsComplete()

	consumer, _ := topic.Consumer("analysis", diaspora.FullDataSelector)
	defer consumer.Close()
	for ev, err := range consumer.Events(10 * time.Second) { // ends at the end of the stream
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.ID(), ev.Metadata(), string(ev.Data().Bytes()))
		ev.Acknowledge() // commits the offset after it for the group "analysis"
	}
	// Output:
	// 0 {"frame":0} pixels
	// 1 {"frame":1} pixels
	// 2 {"frame":2} pixels
}
