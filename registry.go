package diaspora

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// DriverFactory makes a driver from its options.
type DriverFactory func(options Metadata) (DriverInterface, error)

// registry maps names to factories; it is safe for concurrent use.
type registry[F any] struct {
	kind string
	mu   sync.RWMutex
	m    map[string]F
}

func (r *registry[F]) register(name string, f F, isNil bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if isNil {
		panic(fmt.Sprintf("diaspora: Register%s %q: nil factory", r.kind, name))
	}
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("diaspora: Register%s called twice for %q", r.kind, name))
	}
	if r.m == nil {
		r.m = make(map[string]F)
	}
	r.m[name] = f
}

func (r *registry[F]) lookup(name string) (F, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.m[name]
	return f, ok
}

func (r *registry[F]) names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

type (
	validatorFactory  = func(Metadata) (ValidatorInterface, error)
	selectorFactory   = func(Metadata) (PartitionSelectorInterface, error)
	serializerFactory = func(Metadata) (SerializerInterface, error)
)

var (
	drivers     = registry[DriverFactory]{kind: "Driver"}
	validators  = registry[validatorFactory]{kind: "Validator"}
	selectors   = registry[selectorFactory]{kind: "PartitionSelector"}
	serializers = registry[serializerFactory]{kind: "Serializer"}
)

// RegisterDriver makes a driver available under name to NewDriver. It panics
// when f is nil or name is already registered, like sql.Register. Drivers call
// it from init.
func RegisterDriver(name string, f DriverFactory) { drivers.register(name, f, f == nil) }

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return drivers.names() }

// RegisterValidator makes a validator type available to
// ValidatorFromMetadata as {"type": name, ...}. It panics when f is nil or
// name is already registered.
func RegisterValidator(name string, f func(Metadata) (ValidatorInterface, error)) {
	validators.register(name, f, f == nil)
}

// RegisterPartitionSelector makes a partition selector type available to
// PartitionSelectorFromMetadata as {"type": name, ...}. It panics when f is
// nil or name is already registered.
func RegisterPartitionSelector(name string, f func(Metadata) (PartitionSelectorInterface, error)) {
	selectors.register(name, f, f == nil)
}

// RegisterSerializer makes a serializer type available to
// SerializerFromMetadata as {"type": name, ...}. It panics when f is nil or
// name is already registered.
func RegisterSerializer(name string, f func(Metadata) (SerializerInterface, error)) {
	serializers.register(name, f, f == nil)
}

func init() {
	RegisterValidator(defaultType, func(Metadata) (ValidatorInterface, error) { return defaultValidator{}, nil })
	RegisterValidator(schemaType, newSchemaValidator)
	RegisterPartitionSelector(defaultType, func(Metadata) (PartitionSelectorInterface, error) {
		return &defaultSelector{}, nil
	})
	RegisterSerializer(defaultType, func(Metadata) (SerializerInterface, error) { return defaultSerializer{}, nil })
}

// The built-in plug-in types.
const (
	defaultType = "default"
	schemaType  = "schema"
)

// defaultConfig is {"type":"default"}, the Metadata of every default plug-in.
var defaultConfig = MustMetadata(`{"type":"default"}`)

// fromConfig builds a plug-in of the registry r from config, whose "type"
// field names the registered factory ("default" when absent).
func fromConfig[T any](r *registry[func(Metadata) (T, error)], config Metadata) (T, error) {
	var zero T
	if !config.IsObject() {
		return zero, fmt.Errorf("diaspora: %s config %s: %w: want a JSON object", r.kind, quoteShort(config.Bytes()), ErrInvalidArgument)
	}
	raw, err := config.field("type")
	if err != nil {
		return zero, err
	}
	typ := defaultType
	if raw != nil {
		if err := json.Unmarshal(raw, &typ); err != nil {
			return zero, fmt.Errorf("diaspora: %s config: \"type\" %s: %w: want a string", r.kind, raw, ErrInvalidArgument)
		}
	}
	f, ok := r.lookup(typ)
	if !ok {
		return zero, fmt.Errorf("diaspora: %s type %q: %w: not registered (have %v)", r.kind, typ, ErrInvalidArgument, r.names())
	}
	v, err := f(config)
	if err != nil {
		return zero, fmt.Errorf("diaspora: %s type %q: %w", r.kind, typ, err)
	}
	return v, nil
}
