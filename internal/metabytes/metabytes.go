// Package metabytes lets the driver wrap bytes it has already checked with
// diaspora.MetadataOfShape as a diaspora.Metadata again, without checking
// them on every call: an event that keeps its metadata as bytes (no
// pointer of its own) makes its Metadata when asked. Package diaspora sets
// Of when it is initialized.
package metabytes

// Of is a func([]byte) diaspora.Metadata that takes its bytes as they are.
var Of any
