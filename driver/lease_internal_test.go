package driver

import (
	"log/slog"
	"testing"
	"time"
)

// The lease is extended in the background once half used, so pushes do
// not wait for its fsync; IDs at or past it still wait for a stored lease;
// quick extensions grow the block.
func TestIDLeaseExtendsAheadAndGrows(t *testing.T) {
	dir := t.TempDir()
	l := &idLease{dir: dir, mode: 0o600, logger: slog.Default()}
	l.cover(0)
	first := l.limit.Load()
	if stored, err := readIDLease(dir); err != nil || stored != first || first < idLeaseBlock {
		t.Fatalf("after the first cover: lease %d (%v), limit %d; want a stored lease of at least %d", stored, err, first, idLeaseBlock)
	}
	// Past the refresh point but below the limit: returns at once, and the
	// lease moves on in the background.
	l.cover(l.refresh.Load())
	deadline := time.Now().Add(10 * time.Second)
	for l.limit.Load() == first {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not extended in the background")
		}
		time.Sleep(time.Millisecond)
	}
	for l.bg.Load() {
		time.Sleep(time.Millisecond)
	}
	second := l.limit.Load()
	if stored, _ := readIDLease(dir); stored != second {
		t.Fatalf("background extension: limit %d but %d stored", second, stored)
	}
	// At the limit itself the cover waits until the lease is stored.
	l.cover(second)
	if stored, _ := readIDLease(dir); stored <= second || l.limit.Load() != stored {
		t.Fatalf("cover of the limit %d: stored %d, limit %d; want both past it", second, stored, l.limit.Load())
	}
	l.mu.Lock()
	block := l.block
	l.mu.Unlock()
	if block <= idLeaseBlock {
		t.Fatalf("three extensions within a second: block %d, want it grown past %d", block, idLeaseBlock)
	}
}
