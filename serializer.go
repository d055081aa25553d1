package diaspora

import "bytes"

// Serializer is the user-facing handle of a topic's SerializerInterface. The
// zero value is the "default" serializer: the metadata's JSON text, unchanged.
type Serializer struct {
	z SerializerInterface
}

// NewSerializer wraps z; a nil z gives the default serializer.
func NewSerializer(z SerializerInterface) Serializer { return Serializer{z} }

// SerializerFromMetadata builds the serializer registered under the "type"
// field of config ("default" when absent); an unknown type is an error
// wrapping ErrInvalidArgument.
func SerializerFromMetadata(config Metadata) (Serializer, error) {
	z, err := fromConfig(&serializers, config)
	if err != nil {
		return Serializer{}, err
	}
	return Serializer{z}, nil
}

// Interface returns the implementation, the default one for the zero value.
func (s Serializer) Interface() SerializerInterface {
	if s.z == nil {
		return defaultSerializer{}
	}
	return s.z
}

// Serialize appends the encoding of md to dst.
func (s Serializer) Serialize(dst []byte, md Metadata) ([]byte, error) {
	return s.Interface().Serialize(dst, md)
}

// Deserialize decodes src into a Metadata that does not refer to src.
func (s Serializer) Deserialize(src []byte) (Metadata, error) {
	return s.Interface().Deserialize(src)
}

// Metadata returns the serializer's config; {"type":"default"} for the
// default.
func (s Serializer) Metadata() Metadata { return s.Interface().Metadata() }

func (Serializer) isTopicArg() {}

// defaultSerializer writes the compact JSON text of the metadata as is.
type defaultSerializer struct{}

// Serialize appends md.Bytes() without parsing or re-encoding it.
func (defaultSerializer) Serialize(dst []byte, md Metadata) ([]byte, error) {
	return append(dst, md.Bytes()...), nil
}

// Deserialize copies src first (it may be shared memory that changes or is
// reused), then validates the copy, which the Metadata keeps.
func (defaultSerializer) Deserialize(src []byte) (Metadata, error) {
	return MetadataFromBytes(bytes.Clone(src))
}

func (defaultSerializer) Metadata() Metadata { return defaultConfig }
