package gateway

import "testing"

// TestBufferPoolAllocatesNothing: handing a copy buffer out and back costs
// no allocation once the pool holds one.
func TestBufferPoolAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	b := newBufferPool()
	b.Put(b.Get())
	if n := testing.AllocsPerRun(100, func() {
		p := b.Get()
		if len(p) != copyBufferSize {
			t.Fatalf("got a %d-byte buffer, want %d", len(p), copyBufferSize)
		}
		b.Put(p)
	}); n != 0 {
		t.Fatalf("%v allocations per Get and Put, want 0", n)
	}
}
