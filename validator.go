package diaspora

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validator is the user-facing handle of a topic's ValidatorInterface. The
// zero value is the "default" validator, which accepts every event.
type Validator struct {
	v ValidatorInterface
}

// NewValidator wraps v; a nil v gives the default validator.
func NewValidator(v ValidatorInterface) Validator { return Validator{v} }

// ValidatorFromMetadata builds the validator registered under the "type"
// field of config: "default" (also when the field is absent), "schema", or a
// type added with RegisterValidator. An unknown type is an error wrapping
// ErrInvalidArgument.
func ValidatorFromMetadata(config Metadata) (Validator, error) {
	v, err := fromConfig(&validators, config)
	if err != nil {
		return Validator{}, err
	}
	return Validator{v}, nil
}

// Interface returns the implementation, the default one for the zero value.
func (v Validator) Interface() ValidatorInterface {
	if v.v == nil {
		return defaultValidator{}
	}
	return v.v
}

// Validate checks an event; a rejection wraps ErrInvalidMetadata.
func (v Validator) Validate(md Metadata, data DataView) error {
	if v.v == nil {
		return nil
	}
	return v.v.Validate(md, data)
}

// Metadata returns the validator's config; {"type":"default"} for the
// default.
func (v Validator) Metadata() Metadata { return v.Interface().Metadata() }

func (Validator) isTopicArg() {}

// defaultValidator accepts every event without looking at it.
type defaultValidator struct{}

func (defaultValidator) Validate(Metadata, DataView) error { return nil }
func (defaultValidator) Metadata() Metadata                { return defaultConfig }

// schemaValidator checks event metadata against a JSON Schema given as
// {"type":"schema","schema":{...}}.
type schemaValidator struct {
	config Metadata
	schema *jsonschema.Schema
}

// schemaURL names the schema of a validator inside its private compiler.
const schemaURL = "diaspora:///metadata-schema.json"

func newSchemaValidator(config Metadata) (ValidatorInterface, error) {
	raw, err := config.field("schema")
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("schema validator config %s: %w: missing \"schema\"", quoteShort(config.Bytes()), ErrInvalidArgument)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema validator: \"schema\": %w: %v", ErrInvalidJSON, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("schema validator: %w: %v", ErrInvalidArgument, err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("schema validator: compiling the schema: %w: %v", ErrInvalidArgument, err)
	}
	return &schemaValidator{config: config, schema: sch}, nil
}

// noLoader refuses every external $ref, so a topic's schema never makes the
// process read files or the network.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema validator: loading %q: %w: external references are not allowed", url, ErrNotSupported)
}

// Validate parses md and checks it against the schema; a failure says which
// field failed and why.
func (s *schemaValidator) Validate(md Metadata, _ DataView) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(md.Bytes()))
	if err != nil {
		return fmt.Errorf("diaspora: schema validator: metadata %s: %w: %v", quoteShort(md.Bytes()), ErrInvalidJSON, err)
	}
	err = s.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("diaspora: schema validator: metadata %s: %w: %s", quoteShort(md.Bytes()), ErrInvalidMetadata, describeFailure(ve))
	}
	return fmt.Errorf("diaspora: schema validator: metadata %s: %w: %v", quoteShort(md.Bytes()), ErrInvalidMetadata, err)
}

func (s *schemaValidator) Metadata() Metadata { return s.config }

// describeFailure lists the innermost failures of ve, each with the JSON
// pointer of the field, as "at /x: got string, want number; ...".
func describeFailure(ve *jsonschema.ValidationError) string {
	var parts []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		// The library's message for a leaf is "jsonschema validation failed ...
		// at '/x': why" or "at '/x': why"; keep its last line.
		msg := strings.TrimSpace(e.Error())
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		msg = strings.TrimPrefix(msg, "- ")
		if !strings.HasPrefix(msg, "at '") {
			msg = fmt.Sprintf("at '/%s': %s", strings.Join(e.InstanceLocation, "/"), msg)
		}
		parts = append(parts, msg)
	}
	walk(ve)
	return strings.Join(parts, "; ")
}
