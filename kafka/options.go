package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/diaspora-shm/diaspora"
)

// driverOptions are the driver's options, in the shape of the Octopus
// driver's: {"kafka": {librdkafka-style keys}, "namespace": "..."}.
type driverOptions struct {
	Namespace      string
	Seeds          []string
	ConnectTimeout time.Duration // bound on reaching a broker at open
	PushTimeout    time.Duration // bound on delivering one push
	MaxMessage     int32         // the largest record the producer sends
	clientOpts     []kgo.Opt     // client id, TLS, SASL
	producerOpts   []kgo.Opt     // linger, compression
}

// The librdkafka keys the driver maps; any other key is refused by name.
var kafkaKeys = map[string]string{
	"bootstrap.servers":                   "host:port, comma-separated, or an array",
	"metadata.broker.list":                "the same as bootstrap.servers",
	"client.id":                           "a string",
	"security.protocol":                   "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
	"sasl.mechanism":                      "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
	"sasl.mechanisms":                     "the same as sasl.mechanism",
	"sasl.username":                       "a string",
	"sasl.password":                       "a string",
	"ssl.ca.location":                     "a PEM file of CA certificates",
	"ssl.certificate.location":            "a PEM file of the client's certificate",
	"ssl.key.location":                    "a PEM file of the client's key",
	"enable.ssl.certificate.verification": "true or false",
	"message.max.bytes":                   "the largest record, in bytes",
	"socket.connection.setup.timeout.ms":  "milliseconds to reach a broker at open (default 10000)",
	"message.timeout.ms":                  "milliseconds to deliver a push (default 30000)",
	"acks":                                "all (-1): idempotent producing needs it",
	"linger.ms":                           "milliseconds a producer waits to fill a batch (default 0)",
	"compression.type":                    "none, gzip, snappy, lz4 or zstd",
	"enable.idempotence":                  "true: the driver always produces idempotently",
}

func parseDriverOptions(md diaspora.Metadata) (driverOptions, error) {
	o := driverOptions{ConnectTimeout: 10 * time.Second, PushTimeout: 30 * time.Second, MaxMessage: 64 << 20}
	var top map[string]json.RawMessage
	if err := md.Decode(&top); err != nil {
		return o, fmt.Errorf("%w: kafka driver options: want an object: %v", diaspora.ErrInvalidArgument, err)
	}
	for k := range top {
		if k != "kafka" && k != "namespace" {
			return o, fmt.Errorf("%w: kafka driver options: unknown key %q (want \"kafka\" and \"namespace\")", diaspora.ErrInvalidArgument, k)
		}
	}
	if ns, ok := top["namespace"]; ok {
		if err := json.Unmarshal(ns, &o.Namespace); err != nil {
			return o, fmt.Errorf("%w: kafka driver options: namespace: want a string", diaspora.ErrInvalidArgument)
		}
		if err := validName(o.Namespace, "namespace"); err != nil && o.Namespace != "" {
			return o, err
		}
	}
	var kc map[string]json.RawMessage
	if raw, ok := top["kafka"]; ok {
		if err := json.Unmarshal(raw, &kc); err != nil {
			return o, fmt.Errorf("%w: kafka driver options: \"kafka\": want an object of librdkafka-style keys", diaspora.ErrInvalidArgument)
		}
	}
	keys := make([]string, 0, len(kc))
	for k := range kc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	str := func(k string) (string, error) {
		var s string
		if err := json.Unmarshal(kc[k], &s); err == nil {
			return s, nil
		}
		var n json.Number
		if err := json.Unmarshal(kc[k], &n); err == nil {
			return n.String(), nil
		}
		var b bool
		if err := json.Unmarshal(kc[k], &b); err == nil {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("%w: kafka driver options: kafka.%s: want %s", diaspora.ErrInvalidArgument, k, kafkaKeys[k])
	}
	var (
		protocol, mechanism, user, pass string
		caFile, certFile, keyFile       string
		verify                          = true
	)
	for _, k := range keys {
		want, known := kafkaKeys[k]
		if !known {
			return o, fmt.Errorf("%w: kafka driver options: unknown key kafka.%s (known: %s)", diaspora.ErrInvalidArgument, k, strings.Join(knownKeys(), ", "))
		}
		bad := func() error {
			return fmt.Errorf("%w: kafka driver options: kafka.%s: want %s", diaspora.ErrInvalidArgument, k, want)
		}
		switch k {
		case "bootstrap.servers", "metadata.broker.list":
			var list []string
			if err := json.Unmarshal(kc[k], &list); err != nil {
				s, err := str(k)
				if err != nil {
					return o, bad()
				}
				list = strings.Split(s, ",")
			}
			for _, s := range list {
				if s = strings.TrimSpace(s); s != "" {
					o.Seeds = append(o.Seeds, s)
				}
			}
			continue
		}
		v, err := str(k)
		if err != nil {
			return o, err
		}
		switch k {
		case "client.id":
			o.clientOpts = append(o.clientOpts, kgo.ClientID(v))
		case "security.protocol":
			protocol = strings.ToUpper(v)
			switch protocol {
			case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
			default:
				return o, bad()
			}
		case "sasl.mechanism", "sasl.mechanisms":
			mechanism = strings.ToUpper(v)
		case "sasl.username":
			user = v
		case "sasl.password":
			pass = v
		case "ssl.ca.location":
			caFile = v
		case "ssl.certificate.location":
			certFile = v
		case "ssl.key.location":
			keyFile = v
		case "enable.ssl.certificate.verification":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, bad()
			}
			verify = b
		case "message.max.bytes":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 1024 {
				return o, bad()
			}
			o.MaxMessage = int32(n)
		case "socket.connection.setup.timeout.ms", "message.timeout.ms":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return o, bad()
			}
			d := time.Duration(n) * time.Millisecond
			if k == "message.timeout.ms" {
				o.PushTimeout = d
			} else {
				o.ConnectTimeout = d
			}
		case "linger.ms":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > 60_000 {
				return o, bad()
			}
			o.producerOpts = append(o.producerOpts, kgo.ProducerLinger(time.Duration(n)*time.Millisecond))
		case "compression.type":
			var c kgo.CompressionCodec
			switch strings.ToLower(v) {
			case "none":
				c = kgo.NoCompression()
			case "gzip":
				c = kgo.GzipCompression()
			case "snappy":
				c = kgo.SnappyCompression()
			case "lz4":
				c = kgo.Lz4Compression()
			case "zstd":
				c = kgo.ZstdCompression()
			default:
				return o, bad()
			}
			o.producerOpts = append(o.producerOpts, kgo.ProducerBatchCompression(c))
		case "acks":
			if v != "all" && v != "-1" {
				return o, fmt.Errorf("%w: kafka driver options: kafka.acks %q: the driver produces idempotently, which needs all", diaspora.ErrInvalidArgument, v)
			}
		case "enable.idempotence":
			if v != "true" {
				return o, fmt.Errorf("%w: kafka driver options: kafka.enable.idempotence %q: the driver always produces idempotently", diaspora.ErrInvalidArgument, v)
			}
		}
	}
	if len(o.Seeds) == 0 {
		return o, fmt.Errorf("%w: kafka driver options: kafka.bootstrap.servers is missing", diaspora.ErrInvalidArgument)
	}
	tls := protocol == "SSL" || protocol == "SASL_SSL"
	if !tls && (caFile != "" || certFile != "" || keyFile != "") {
		// As librdkafka: the ssl.* keys apply to SSL and SASL_SSL only.
		return o, fmt.Errorf("%w: kafka driver options: kafka.ssl.* keys need kafka.security.protocol SSL or SASL_SSL (it is %q)", diaspora.ErrInvalidArgument, protocol)
	}
	if tls {
		cfg, err := tlsConfig(caFile, certFile, keyFile, verify)
		if err != nil {
			return o, err
		}
		o.clientOpts = append(o.clientOpts, kgo.DialTLSConfig(cfg))
	}
	if protocol == "SASL_PLAINTEXT" || protocol == "SASL_SSL" || mechanism != "" {
		switch mechanism {
		case "PLAIN", "":
			o.clientOpts = append(o.clientOpts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			o.clientOpts = append(o.clientOpts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			o.clientOpts = append(o.clientOpts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
		default:
			return o, fmt.Errorf("%w: kafka driver options: kafka.sasl.mechanism %q: want %s", diaspora.ErrInvalidArgument, mechanism, kafkaKeys["sasl.mechanism"])
		}
	}
	return o, nil
}

func knownKeys() []string {
	ks := make([]string, 0, len(kafkaKeys))
	for k := range kafkaKeys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func tlsConfig(caFile, certFile, keyFile string, verify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !verify} //nolint:gosec // the user's choice, by name
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("kafka driver options: kafka.ssl.ca.location: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: kafka driver options: kafka.ssl.ca.location %s holds no PEM certificate", diaspora.ErrInvalidArgument, caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, fmt.Errorf("%w: kafka driver options: kafka.ssl.certificate.location and kafka.ssl.key.location go together", diaspora.ErrInvalidArgument)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka driver options: the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// topicOptions are a topic's options.
type topicOptions struct {
	NumPartitions     int   `json:"num_partitions"`
	ReplicationFactor int   `json:"replication_factor"` // -1: the cluster's default
	MaxMessageBytes   int64 `json:"max_message_bytes"`  // 0: the cluster's default
}

func parseTopicOptions(md diaspora.Metadata) (topicOptions, error) {
	o := topicOptions{NumPartitions: 1, ReplicationFactor: -1}
	var m map[string]json.RawMessage
	if err := md.Decode(&m); err != nil {
		return o, fmt.Errorf("%w: kafka topic options: want an object: %v", diaspora.ErrInvalidArgument, err)
	}
	for k, v := range m {
		var n int64
		if err := json.Unmarshal(v, &n); err != nil {
			if k == "num_partitions" || k == "replication_factor" || k == "max_message_bytes" {
				return o, fmt.Errorf("%w: kafka topic options: %s: want an integer, got %s", diaspora.ErrInvalidArgument, k, v)
			}
		}
		switch k {
		case "num_partitions":
			if n < 1 || n > 1<<16 {
				return o, fmt.Errorf("%w: kafka topic options: num_partitions %d: want 1..65536", diaspora.ErrInvalidArgument, n)
			}
			o.NumPartitions = int(n)
		case "replication_factor":
			if (n < 1 && n != -1) || n > 1<<15-1 {
				return o, fmt.Errorf("%w: kafka topic options: replication_factor %d: want -1 (the cluster's default) or 1..32767", diaspora.ErrInvalidArgument, n)
			}
			o.ReplicationFactor = int(n)
		case "max_message_bytes":
			if n < 1024 || n > 1<<31-1 {
				return o, fmt.Errorf("%w: kafka topic options: max_message_bytes %d: want 1024..2^31-1", diaspora.ErrInvalidArgument, n)
			}
			o.MaxMessageBytes = n
		default:
			return o, fmt.Errorf("%w: kafka topic options: unknown key %q (want num_partitions, replication_factor, max_message_bytes)", diaspora.ErrInvalidArgument, k)
		}
	}
	return o, nil
}

// validName checks a topic (or namespace) name: Kafka's legal characters,
// with room for the "__info_" prefix.
func validName(name, what string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("%w: kafka %s %q: want 1..200 characters", diaspora.ErrInvalidArgument, what, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: kafka %s %q: character %q (Kafka takes letters, digits, '.', '_' and '-')", diaspora.ErrInvalidArgument, what, name, c)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: kafka %s %q", diaspora.ErrInvalidArgument, what, name)
	}
	return nil
}
