// Package topicplugins builds what every driver derives from a topic's
// stored configuration, the same way for all of them: its validator,
// partition selector and serializer, and the information of its
// partitions ({"id": p, "topic": name}).
package topicplugins

import (
	"fmt"

	"github.com/diaspora-shm/diaspora"
)

// Set is a topic's plug-ins and partition information.
type Set struct {
	Validator  diaspora.Validator
	Selector   diaspora.PartitionSelector
	Serializer diaspora.Serializer
	Infos      []diaspora.PartitionInfo
}

// Build makes the plug-ins from their configs (an empty or null config is
// the default plug-in) and tells the selector the partitions.
func Build(topic string, validator, selector, serializer diaspora.Metadata, partitions int) (Set, error) {
	var s Set
	var err error
	if s.Validator, err = diaspora.ValidatorFromMetadata(orDefault(validator)); err != nil {
		return s, fmt.Errorf("topic %q: validator: %w", topic, err)
	}
	if s.Selector, err = diaspora.PartitionSelectorFromMetadata(orDefault(selector)); err != nil {
		return s, fmt.Errorf("topic %q: partition selector: %w", topic, err)
	}
	if s.Serializer, err = diaspora.SerializerFromMetadata(orDefault(serializer)); err != nil {
		return s, fmt.Errorf("topic %q: serializer: %w", topic, err)
	}
	s.Infos = make([]diaspora.PartitionInfo, partitions)
	for p := range s.Infos {
		md, err := diaspora.MetadataOf(map[string]any{"id": p, "topic": topic})
		if err != nil {
			return s, err
		}
		s.Infos[p] = diaspora.PartitionInfo{Metadata: md}
	}
	if err := s.Selector.SetPartitions(s.Infos); err != nil {
		return s, fmt.Errorf("topic %q: partition selector: %w", topic, err)
	}
	return s, nil
}

func orDefault(md diaspora.Metadata) diaspora.Metadata {
	if b := md.Bytes(); len(b) == 0 || string(b) == "null" {
		return diaspora.Metadata{}
	}
	return md
}
