package diaspora_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diaspora-shm/diaspora"
)

// JSON nested past encoding/json's limit is refused saying it is the
// nesting depth, how deep, and the limit; other invalid JSON says where it
// breaks.
func TestMetadataDepthLimitIsNamed(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	objects := strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)
	for _, c := range []struct{ name, text, depth string }{
		{"arrays", deep, "nest 20000 deep"},
		{"objects", objects, "nest 10001 deep"},
	} {
		for what, parse := range map[string]func(string) (diaspora.Metadata, error){
			"NewMetadata":       diaspora.NewMetadata,
			"MetadataFromBytes": func(s string) (diaspora.Metadata, error) { return diaspora.MetadataFromBytes([]byte(s)) },
		} {
			_, err := parse(c.text)
			if !errors.Is(err, diaspora.ErrInvalidJSON) {
				t.Fatalf("%s(%s): want ErrInvalidJSON, got %v", what, c.name, err)
			}
			for _, want := range []string{c.depth, "the limit is 10000"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s(%s): error %q does not say %q", what, c.name, err, want)
				}
			}
		}
	}
	if _, err := diaspora.NewMetadata(strings.Repeat("[", diaspora.MaxJSONDepth) + strings.Repeat("]", diaspora.MaxJSONDepth)); err != nil {
		t.Errorf("NewMetadata at MaxJSONDepth: %v", err)
	}
	_, err := diaspora.NewMetadata(`{"k":x}`)
	if !errors.Is(err, diaspora.ErrInvalidJSON) || !strings.Contains(err.Error(), "invalid character 'x'") || strings.Contains(err.Error(), "deep") {
		t.Errorf(`NewMetadata({"k":x}): want ErrInvalidJSON naming the character, got %v`, err)
	}
}
