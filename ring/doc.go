// Package ring is a lock-free multi-producer, multi-reader ring of records in
// a memory-mapped file, shared by processes on one node.
//
// Producers claim space for a batch of records with one 128-bit CAS on the
// tail, write the records in place, and publish them with one 128-bit CAS on
// the first record's header. Readers read committed records in place (zero
// copy), spin briefly and then sleep on a futex word. Space is reused only
// behind every live reader's release position (and the archived position of a
// durable ring). A producer that dies mid-claim is turned into padding; a
// reader that dies stops counting. Nothing read from the mapping is trusted:
// damage gives an error wrapping ErrCorrupt, never a panic. See FORMAT.md.
package ring
