package memstore

import "testing"

// TestShardHashCollision: two keys with one hash are both kept, found,
// counted and removed apart.
func TestShardHashCollision(t *testing.T) {
	t.Parallel()
	sh := &shard{capacity: 10}
	const h = 42
	a, b := entryKey{policy: "p", key: "a"}, entryKey{policy: "p", key: "b"}
	mk := func() keyState { return new(fixedEntry) }
	ea := sh.lookup(a, h, 0, mk)
	eb := sh.lookup(b, h, 0, mk)
	ea.drained, eb.drained = 100, 100
	if ea == eb || sh.n != 2 {
		t.Fatalf("two keys on one hash: same entry %v, n %d", ea == eb, sh.n)
	}
	if sh.find(a, h) != ea || sh.find(b, h) != eb {
		t.Fatal("find does not tell the keys apart")
	}
	sh.removeAt(sh.index(a, h))
	if sh.find(a, h) != nil || sh.find(b, h) != eb || sh.n != 1 {
		t.Fatalf("after removing a: a %v, b found %v, n %d", sh.find(a, h), sh.find(b, h) == eb, sh.n)
	}
	if got := sh.lookup(b, h, 50, nil); got != eb {
		t.Fatal("b was lost")
	}
	if got := sh.lookup(b, h, 100, nil); got != nil || sh.n != 0 {
		t.Fatalf("a drained entry is not dropped: %v, n %d", got, sh.n)
	}
}

// TestShardTable: a shard's table agrees with a map through random
// inserts, removals, sweeps and evictions, on hashes that collide and
// probe runs that wrap around.
func TestShardTable(t *testing.T) {
	t.Parallel()
	rng := uint64(1)
	next := func(n int) int { rng = rng*6364136223846793005 + 1442695040888963407; return int(rng>>33) % n }
	sh := &shard{capacity: 1 << 30}
	want := map[entryKey]*entry{}
	hashOf := map[entryKey]uint64{}
	mk := func() keyState { return new(cellEntry) }
	check := func(step int) {
		t.Helper()
		if sh.n != len(want) {
			t.Fatalf("step %d: n %d, want %d", step, sh.n, len(want))
		}
		held := 0
		for _, sl := range sh.slots {
			if sl.e != nil {
				held++
				if want[sl.e.key] != sl.e {
					t.Fatalf("step %d: stray entry %v", step, sl.e.key)
				}
			}
		}
		if held != len(want) || (len(sh.slots) > 0 && 2*held > len(sh.slots)) {
			t.Fatalf("step %d: %d held in %d slots, want %d", step, held, len(sh.slots), len(want))
		}
		for k, e := range want {
			if sh.find(k, hashOf[k]) != e {
				t.Fatalf("step %d: %v lost", step, k)
			}
		}
	}
	for step := range 20000 {
		k := entryKey{policy: "p", key: string(rune('a' + next(400)))}
		h := uint64(next(7)) * shardCount // few homes: long runs that collide
		if next(3) == 0 {
			h = uint64(next(1<<20)) * shardCount
		}
		switch op := next(10); {
		case op < 5:
			if e := sh.find(k, h); e == nil && want[k] == nil {
				e = sh.lookup(k, h, 0, mk)
				e.drained = int64(1 + next(100))
				want[k], hashOf[k] = e, h
			}
		case op < 8:
			if e := want[k]; e != nil {
				sh.removeAt(sh.index(k, hashOf[k]))
				delete(want, k)
			}
		case op < 9 && step%50 == 0:
			now := int64(next(100))
			sh.sweep(now)
			for k, e := range want {
				if e.drained <= now {
					delete(want, k)
				}
			}
		default:
			if step%20 == 0 && len(want) > 0 {
				before := sh.n
				sh.evict(1 << 40) // everything has drained: the first found goes
				if sh.n != before-1 {
					t.Fatalf("step %d: evict left %d of %d", step, sh.n, before)
				}
				for k, e := range want {
					if sh.find(k, hashOf[k]) != e {
						delete(want, k)
					}
				}
			}
		}
		check(step)
	}
}
