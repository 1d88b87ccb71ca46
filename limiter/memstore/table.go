package memstore

import (
	"hash/maphash"
	"math/rand/v2"
	"sync"

	"github.com/sluice-gateway/sluice/limiter"
)

// A call hashes its key once (locate): the hash picks the shard (its low
// bits, which also pick the key's stripe in the busiest-key summaries:
// topk.NewLocked, one stripe per shard) and the entry's place in the
// shard's table (the bits above).
// Every policy's entry for one key has the same hash; the entry key tells
// them apart.

// shard is an open-addressing table (linear probing, at most half full)
// of entries under one mutex.
type shard struct {
	mu       sync.Mutex
	slots    []slot // a power of two of them; nil until the first entry
	n        int    // entries held
	capacity int    // this shard's part of MaxKeys
	// Keep shards on separate cache lines (and line pairs, which
	// prefetchers fetch together), however the array is aligned.
	_ [80]byte
}

// slot is one place in a shard's table; e is nil when it is free.
type slot struct {
	h uint64
	e *entry
}

const minSlots = 8

// locate hashes the stored form of key, once per call, and returns its
// shard, its hash and its stored form.
func (s *Store) locate(key string) (*shard, uint64, string) {
	sk := limiter.StoreKey(key)
	h := maphash.String(s.seed, sk)
	return &s.shards[h%shardCount], h, sk
}

// home is where the probe for h starts.
func (sh *shard) home(h uint64) int {
	return int((h / shardCount) & uint64(len(sh.slots)-1))
}

// find returns the entry of k, or nil. The shard's lock must be held.
func (sh *shard) find(k entryKey, h uint64) *entry {
	if i := sh.index(k, h); i >= 0 {
		return sh.slots[i].e
	}
	return nil
}

// index returns the slot of k, or -1.
func (sh *shard) index(k entryKey, h uint64) int {
	if sh.n == 0 {
		return -1
	}
	mask := len(sh.slots) - 1
	for i := sh.home(h); ; i = (i + 1) & mask {
		sl := &sh.slots[i]
		if sl.e == nil {
			return -1
		}
		if sl.h == h && sl.e.key == k {
			return i
		}
	}
}

// lookup returns the entry for k, creating it with mk (which returns a new
// algorithm's entry) when mk is not nil. A drained entry is replaced, so
// stale state never leaks into a new window. The shard's lock must be held.
func (sh *shard) lookup(k entryKey, h uint64, now int64, mk func() keyState) *entry {
	i := sh.index(k, h)
	if i >= 0 && sh.slots[i].e.drained <= now {
		sh.removeAt(i)
		i = -1
	}
	if i >= 0 {
		return sh.slots[i].e
	}
	if mk == nil {
		return nil
	}
	if sh.n >= sh.capacity {
		sh.evict(now)
	}
	st := mk()
	e := st.base()
	*e = entry{key: k, state: st}
	sh.insert(h, e)
	return e
}

// insert adds e, whose key's hash is h, growing the table to keep it at
// most half full.
func (sh *shard) insert(h uint64, e *entry) {
	if 2*(sh.n+1) > len(sh.slots) {
		sh.resize(max(minSlots, 2*len(sh.slots)))
	}
	sh.place(slot{h, e})
	sh.n++
}

// place puts sl in the first free slot of its probe.
func (sh *shard) place(sl slot) {
	mask := len(sh.slots) - 1
	i := sh.home(sl.h)
	for sh.slots[i].e != nil {
		i = (i + 1) & mask
	}
	sh.slots[i] = sl
}

// resize moves every entry to a table of size slots.
func (sh *shard) resize(size int) {
	old := sh.slots
	sh.slots = make([]slot, size)
	for _, sl := range old {
		if sl.e != nil {
			sh.place(sl)
		}
	}
}

// removeAt empties slot i, shifting later entries of its probe run back
// so that no tombstone is left. An entry only ever moves back in its run,
// to a slot at or after i (cyclically).
func (sh *shard) removeAt(i int) {
	mask := len(sh.slots) - 1
	sh.n--
	for {
		sh.slots[i] = slot{}
		j := i
		for {
			j = (j + 1) & mask
			if sh.slots[j].e == nil {
				return
			}
			home := sh.home(sh.slots[j].h)
			// The entry at j may move into the hole at i unless its home
			// lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				sh.slots[i] = sh.slots[j]
				i = j
				break
			}
		}
	}
}

// sweep removes the entries drained at now and shrinks a table left
// mostly empty. The shard's lock must be held.
func (sh *shard) sweep(now int64) {
	for i := 0; i < len(sh.slots); {
		if e := sh.slots[i].e; e != nil && e.drained <= now {
			sh.removeAt(i) // another entry may have moved into i
			continue
		}
		i++
	}
	if size := len(sh.slots); size > minSlots && 8*sh.n < size {
		for size > minSlots && 4*sh.n < size {
			size /= 2
		}
		sh.resize(size)
	}
}

// evict removes the least recently seen entry of a random sample, or the
// first drained one found.
func (sh *shard) evict(now int64) {
	if sh.n == 0 {
		return
	}
	mask := len(sh.slots) - 1
	victim := -1
	oldest, n := int64(1<<63-1), 0
	for i, left := int(rand.Uint64())&mask, len(sh.slots); left > 0 && n < evictSample; i, left = (i+1)&mask, left-1 {
		e := sh.slots[i].e
		if e == nil {
			continue
		}
		if e.drained <= now {
			victim = i
			break
		}
		if e.lastSeen < oldest {
			victim, oldest = i, e.lastSeen
		}
		n++
	}
	if victim >= 0 {
		sh.removeAt(victim)
	}
}

// Sweep removes every key that has drained.
func (s *Store) Sweep() {
	now := s.clock().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.sweep(now)
		sh.mu.Unlock()
	}
}
