package diaspora_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

func TestNewDriverWithAnUnknownNameFails(t *testing.T) {
	d, err := diaspora.NewDriver("unknown", diaspora.Metadata{})
	if !errors.Is(err, diaspora.ErrUnknownDriver) || d.Valid() {
		t.Fatalf("NewDriver(unknown): expected ErrUnknownDriver and an invalid driver, got (%v, %v)", d.Valid(), err)
	}
	if !strings.Contains(err.Error(), `"unknown"`) {
		t.Fatalf("NewDriver(unknown): expected the error to name the driver, got %q", err)
	}
}

func TestRegisteringADriverTwicePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), memDriverName) {
			t.Fatalf("second RegisterDriver(%q): expected a panic naming it, got %v", memDriverName, r)
		}
	}()
	diaspora.RegisterDriver(memDriverName, func(diaspora.Metadata) (diaspora.DriverInterface, error) { return nil, nil })
}

func TestRegisteringAValidatorTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatalf("second RegisterValidator(default): expected a panic, got none")
		}
	}()
	diaspora.RegisterValidator("default", func(diaspora.Metadata) (diaspora.ValidatorInterface, error) { return nil, nil })
}

func TestDriversListsRegisteredNamesSorted(t *testing.T) {
	names := diaspora.Drivers()
	if !slices.Contains(names, memDriverName) || !slices.IsSorted(names) {
		t.Fatalf("Drivers: expected a sorted list holding %q, got %v", memDriverName, names)
	}
}

func TestValidatorFromMetadataWithoutTypeIsTheDefault(t *testing.T) {
	for _, cfg := range []diaspora.Metadata{{}, diaspora.MustMetadata(`{}`), diaspora.MustMetadata(`{"type":"default"}`)} {
		v, err := diaspora.ValidatorFromMetadata(cfg)
		if err != nil || v.Metadata().Dump() != `{"type":"default"}` {
			t.Fatalf("ValidatorFromMetadata(%s): expected the default, got (%s, %v)", cfg, v.Metadata(), err)
		}
		if err := v.Validate(diaspora.StringMetadata("anything"), nil); err != nil {
			t.Fatalf("default validator: expected to accept anything, got %v", err)
		}
	}
	var zero diaspora.Validator
	if zero.Metadata().Dump() != `{"type":"default"}` || zero.Validate(diaspora.Metadata{}, nil) != nil {
		t.Fatalf("zero Validator: expected the default, got %s", zero.Metadata())
	}
}

func TestPluginFromMetadataWithAnUnknownTypeFails(t *testing.T) {
	cfg := diaspora.MustMetadata(`{"type":"nosuch"}`)
	if _, err := diaspora.ValidatorFromMetadata(cfg); !errors.Is(err, diaspora.ErrInvalidArgument) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("ValidatorFromMetadata(nosuch): expected ErrInvalidArgument naming it, got %v", err)
	}
	if _, err := diaspora.PartitionSelectorFromMetadata(cfg); err == nil {
		t.Errorf("PartitionSelectorFromMetadata(nosuch): expected an error, got none")
	}
	if _, err := diaspora.SerializerFromMetadata(cfg); err == nil {
		t.Errorf("SerializerFromMetadata(nosuch): expected an error, got none")
	}
	if _, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(`[1]`)); err == nil {
		t.Errorf("ValidatorFromMetadata([1]): expected an error, got none")
	}
}

const eventSchema = `{"type":"schema","schema":{
	"type":"object",
	"properties":{"event_num":{"type":"integer","minimum":0},"name":{"type":"string"}},
	"required":["event_num"]}}`

func TestSchemaValidatorAcceptsConformingMetadata(t *testing.T) {
	v, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(eventSchema))
	if err != nil {
		t.Fatalf("ValidatorFromMetadata(schema): unexpected error %v", err)
	}
	if err := v.Validate(diaspora.MustMetadata(`{"event_num":3,"name":"x"}`), nil); err != nil {
		t.Fatalf("Validate of conforming metadata: expected nil, got %v", err)
	}
	if got, want := v.Metadata().Dump(), diaspora.MustMetadata(eventSchema).Dump(); got != want {
		t.Fatalf("schema validator Metadata: expected its config %s, got %s", want, got)
	}
}

func TestSchemaValidatorRejectsAndNamesTheField(t *testing.T) {
	v, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(eventSchema))
	if err != nil {
		t.Fatalf("ValidatorFromMetadata(schema): unexpected error %v", err)
	}
	cases := map[string]string{
		`{"event_num":"three"}`:    "event_num",
		`{"event_num":1,"name":2}`: "name",
		`{"name":"x"}`:             "event_num",
		`{"event_num":-1}`:         "event_num",
	}
	for md, field := range cases {
		err := v.Validate(diaspora.MustMetadata(md), nil)
		if !errors.Is(err, diaspora.ErrInvalidMetadata) {
			t.Errorf("Validate(%s): expected ErrInvalidMetadata, got %v", md, err)
			continue
		}
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate(%s): expected the error to name %q, got %q", md, field, err)
		}
	}
}

func TestSchemaValidatorRejectsABadConfig(t *testing.T) {
	for _, cfg := range []string{`{"type":"schema"}`, `{"type":"schema","schema":{"type":12}}`,
		`{"type":"schema","schema":{"$ref":"file:///etc/passwd"}}`} {
		if _, err := diaspora.ValidatorFromMetadata(diaspora.MustMetadata(cfg)); err == nil {
			t.Errorf("ValidatorFromMetadata(%s): expected an error, got none", cfg)
		}
	}
}

func TestDefaultSelectorMapsRequestedPartitionsModuloN(t *testing.T) {
	s, err := diaspora.PartitionSelectorFromMetadata(diaspora.Metadata{})
	if err != nil {
		t.Fatalf("PartitionSelectorFromMetadata({}): unexpected error %v", err)
	}
	if _, err := s.SelectPartitionFor(diaspora.Metadata{}, 0); err == nil {
		t.Fatalf("SelectPartitionFor before SetPartitions: expected an error, got none")
	}
	if err := s.SetPartitions(make([]diaspora.PartitionInfo, 3)); err != nil {
		t.Fatalf("SetPartitions: unexpected error %v", err)
	}
	for req, want := range map[int]int{0: 0, 2: 2, 3: 0, 7: 1} {
		if got, err := s.SelectPartitionFor(diaspora.Metadata{}, req); got != want || err != nil {
			t.Errorf("SelectPartitionFor(%d) of 3: expected %d, got (%d, %v)", req, want, got, err)
		}
	}
	if _, err := s.SelectPartitionFor(diaspora.Metadata{}, -2); !errors.Is(err, diaspora.ErrInvalidArgument) {
		t.Errorf("SelectPartitionFor(-2): expected ErrInvalidArgument, got %v", err)
	}
	if s.Metadata().Dump() != `{"type":"default"}` {
		t.Errorf("default selector Metadata: expected {\"type\":\"default\"}, got %s", s.Metadata())
	}
}

func TestDefaultSelectorIsRoundRobinUnderConcurrency(t *testing.T) {
	s, _ := diaspora.PartitionSelectorFromMetadata(diaspora.Metadata{})
	s.SetPartitions(make([]diaspora.PartitionInfo, 4))
	counts := make([]int, 4)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				p, err := s.SelectPartitionFor(diaspora.Metadata{}, diaspora.AnyPartition)
				if err != nil {
					t.Errorf("SelectPartitionFor(AnyPartition): unexpected error %v", err)
					return
				}
				mu.Lock()
				counts[p]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for p, n := range counts {
		if n != 200 {
			t.Fatalf("round robin over 4 partitions, 800 picks: expected 200 each, got %v (partition %d)", counts, p)
		}
	}
}

func TestDefaultSerializerWritesMetadataBytesAsIs(t *testing.T) {
	var z diaspora.Serializer
	md := diaspora.MustMetadata(`{"event_num":1,"s":"a b"}`)
	out, err := z.Serialize([]byte("prefix:"), md)
	if err != nil || string(out) != "prefix:"+md.Dump() {
		t.Fatalf("Serialize: expected prefix: then the JSON text, got (%q, %v)", out, err)
	}
	dst := make([]byte, 0, 64)
	if allocs := testing.AllocsPerRun(100, func() { dst, _ = z.Serialize(dst[:0], md) }); allocs != 0 {
		t.Fatalf("Serialize into a large enough buffer: expected 0 allocations (no re-encoding), got %v", allocs)
	}
	var v diaspora.Validator
	if allocs := testing.AllocsPerRun(100, func() { _ = v.Validate(md, nil) }); allocs != 0 {
		t.Fatalf("default Validate: expected 0 allocations (no parsing), got %v", allocs)
	}
}

func TestDefaultSerializerDeserializeCopiesAndValidates(t *testing.T) {
	var z diaspora.Serializer
	src := []byte(`{"a":1}`)
	md, err := z.Deserialize(src)
	if err != nil || md.Dump() != `{"a":1}` {
		t.Fatalf("Deserialize: expected {\"a\":1}, got (%s, %v)", md, err)
	}
	copy(src, "XXXXXXX")
	if md.Dump() != `{"a":1}` {
		t.Fatalf("Deserialize: expected a copy independent of src, got %s after src changed", md)
	}
	if _, err := z.Deserialize([]byte(`{"a":`)); !errors.Is(err, diaspora.ErrInvalidJSON) {
		t.Fatalf("Deserialize of bad JSON: expected ErrInvalidJSON, got %v", err)
	}
}
