// Package segment is the durable, per-partition event log of diaspora-shm,
// stored as tidwall/wal segment files in one directory.
//
// Each wal entry is one frame: a batch of events with strictly increasing
// (possibly gapped) IDs, a per-event index and a CRC32C over the whole frame
// (see FORMAT.md). A Writer appends a batch with one write and at most one
// fsync, repairs a torn tail on open and appends past a damaged frame. A
// Reader in any process follows the segment files directly and never returns
// bytes whose CRC failed: damage is a *CorruptionError naming file, offset and
// event IDs. Writer election uses flock; consumer positions are stored with
// tmp+fsync+rename so a crash leaves the old or the new value.
package segment
