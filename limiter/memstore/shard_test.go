package memstore

import "testing"

// TestShardHashCollision: two keys with one hash are both kept, found,
// counted and removed apart.
func TestShardHashCollision(t *testing.T) {
	t.Parallel()
	sh := &shard{m: map[uint64]keyState{}, capacity: 10}
	const h = 42
	a, b := entryKey{policy: "p", key: "a"}, entryKey{policy: "p", key: "b"}
	mk := func() keyState { return new(fixedEntry) }
	ea := sh.lookup(a, h, 0, mk)
	eb := sh.lookup(b, h, 0, mk)
	ea.base().drained, eb.base().drained = 100, 100
	if ea == eb || sh.n != 2 || len(sh.m) != 1 {
		t.Fatalf("two keys on one hash: same entry %v, n %d, map len %d", ea == eb, sh.n, len(sh.m))
	}
	if sh.find(a, h) != ea || sh.find(b, h) != eb {
		t.Fatal("find does not tell the keys apart")
	}
	sh.remove(ea)
	if sh.find(a, h) != nil || sh.find(b, h) != eb || sh.n != 1 {
		t.Fatalf("after removing a: a %v, b found %v, n %d", sh.find(a, h), sh.find(b, h) == eb, sh.n)
	}
	if got := sh.lookup(b, h, 50, nil); got != eb {
		t.Fatal("b was lost")
	}
	if got := sh.lookup(b, h, 100, nil); got != nil || sh.n != 0 || len(sh.m) != 0 {
		t.Fatalf("a drained entry is not dropped: %v, n %d, map len %d", got, sh.n, len(sh.m))
	}
}
