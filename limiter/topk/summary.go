package topk

import (
	"cmp"
	"slices"
)

// summary is a Space-Saving summary (Metwally, Agrawal and El Abbadi,
// "Efficient computation of frequent and top-k elements in data streams",
// 2005) with room for size keys: a key it holds has its own counter; a new
// key takes the counter of a least counted key and adds one to it. Every
// counter is an overestimate, by at most the smallest counter, which is at
// most total/size: so every key with more than total/size requests is held.
//
// Until it is full, every key it holds has its count beside it (and the
// counts are exact), so counting a request for a held key writes one
// counter. When a new key finds it full, the counters become the paper's
// Stream-Summary, until drain: keys with equal counters share a bucket,
// and the buckets form a list in increasing order, so counting a request
// moves one key to the next bucket in O(1), and a least counted key is
// the head of the first bucket. Keys are found through
// an open-addressing table on their Hash, whose slots hold the high half
// of the hash beside the entry, so a probe reads no other entry. The high
// half places them too: the low bits pick a key's stripe, so the keys of
// one summary may all share them. Everything lives in slices indexed by
// int32, each entry's and each bucket's links side by side, so once the
// summary has filled up, counting allocates nothing and touches few cache
// lines. A summary is not safe for concurrent use.
type summary struct {
	size int
	// Per entry.
	ents []heldKey
	link []entryLinks // the counters' places in the buckets once it is full
	// Per bucket: a free list reuses them.
	bk     []bucket
	free   int32 // first free bucket, chained through next
	lowest int32 // the bucket of the smallest counter, -1 when empty
	// table finds entries by hash, with linear probing: hash's high 32
	// bits << 32 | entry index + 1; 0 is free. It grows with the entries,
	// at most a quarter full, up to 4*size slots.
	table  []uint64
	mask   uint64
	total  int64
	drains uint32  // times drained (wrapping)
	full   bool    // a key has taken another's counter: the buckets hold the counters
	order  []int32 // scratch for toBuckets
}

// heldKey is a key that a summary holds, its hash and, until the summary is
// full, its counter: the line that counting a held key reads and writes.
type heldKey struct {
	key  string
	hash uint64
	n    int64
}

// entryLinks place an entry in its bucket's list.
type entryLinks struct {
	bucket     int32
	prev, next int32 // neighbours in the bucket's entry list; -1 ends it
}

// bucket is a counter value shared by a list of entries.
type bucket struct {
	count      int64
	head       int32 // first entry
	prev, next int32 // neighbouring buckets, in increasing count; -1 ends it
}

func newSummary(size int) *summary {
	s := new(summary)
	s.init(size)
	return s
}

// init makes s an empty summary with room for size keys.
func (s *summary) init(size int) {
	*s = summary{size: size, free: -1, lowest: -1}
	s.grow(min(64, 4*size))
}

// grow makes the table the smallest power of two of at least n slots and
// puts every entry back.
func (s *summary) grow(n int) {
	size := 1
	for size < n {
		size <<= 1
	}
	s.table, s.mask = make([]uint64, size), uint64(size-1)
	for e := range s.ents {
		s.insert(int32(e))
	}
}

// slotOf is the table word of entry e, whose hash is h.
func slotOf(e int32, h uint64) uint64 { return h>>32<<32 | uint64(e+1) }

func (s *summary) find(key string, h uint64) int32 {
	for i := h >> 32 & s.mask; ; i = (i + 1) & s.mask {
		w := s.table[i]
		if w == 0 {
			return -1
		}
		if w>>32 == h>>32 {
			if e := int32(uint32(w)) - 1; s.ents[e].key == key {
				return e
			}
		}
	}
}

func (s *summary) insert(e int32) {
	h := s.ents[e].hash
	i := h >> 32 & s.mask
	for s.table[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.table[i] = slotOf(e, h)
}

// remove takes entry e out of the table, shifting later entries of its
// probe run back so that no tombstone is left.
func (s *summary) remove(e int32) {
	i := s.ents[e].hash >> 32 & s.mask
	for int32(uint32(s.table[i]))-1 != e {
		i = (i + 1) & s.mask
	}
	for {
		s.table[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			w := s.table[j]
			if w == 0 {
				return
			}
			home := (w >> 32) & s.mask // the mask is below 2^32
			// The entry at j may move into the hole at i unless its home
			// lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				s.table[i] = w
				i = j
				break
			}
		}
	}
}

// newBucket returns a bucket with count c, linked after bucket after (or
// first when after is -1).
func (s *summary) newBucket(c int64, after int32) int32 {
	b := s.free
	if b >= 0 {
		s.free = s.bk[b].next
		s.bk[b].count, s.bk[b].head = c, -1
	} else {
		b = int32(len(s.bk))
		s.bk = append(s.bk, bucket{count: c, head: -1, prev: -1, next: -1})
	}
	var nx int32
	if after < 0 {
		nx = s.lowest
		s.lowest = b
	} else {
		nx = s.bk[after].next
		s.bk[after].next = b
	}
	s.bk[b].prev, s.bk[b].next = after, nx
	if nx >= 0 {
		s.bk[nx].prev = b
	}
	return b
}

// unlink takes entry e out of its bucket, freeing the bucket when it
// empties.
func (s *summary) unlink(e int32) {
	l := &s.link[e]
	bk := &s.bk[l.bucket]
	if p := l.prev; p >= 0 {
		s.link[p].next = l.next
	} else {
		bk.head = l.next
	}
	if n := l.next; n >= 0 {
		s.link[n].prev = l.prev
	}
	if bk.head >= 0 {
		return
	}
	p, n := bk.prev, bk.next
	if p >= 0 {
		s.bk[p].next = n
	} else {
		s.lowest = n
	}
	if n >= 0 {
		s.bk[n].prev = p
	}
	bk.next = s.free
	s.free = l.bucket
}

func (s *summary) linkTo(e, b int32) {
	h := s.bk[b].head
	s.link[e] = entryLinks{bucket: b, prev: -1, next: h}
	if h >= 0 {
		s.link[h].prev = e
	}
	s.bk[b].head = e
}

// bump adds one to entry e's counter.
func (s *summary) bump(e int32) {
	b := s.link[e].bucket
	c := s.bk[b].count + 1
	nb := s.bk[b].next
	if nb < 0 || s.bk[nb].count != c {
		nb = s.newBucket(c, b)
	}
	s.unlink(e)
	s.linkTo(e, nb)
}

// add counts one request for key, whose Hash is h, and returns the entry
// that holds key now and whether s held key already. When hint is an entry
// that holds key (where an earlier add put it), key is not looked up; a
// hint from before the last drain would cost a compare with another key.
func (s *summary) add(key string, h uint64, hint int32) (e int32, held bool) {
	s.total++
	e = -1
	if hint >= 0 && int(hint) < len(s.ents) && s.ents[hint].key == key {
		e = hint
	} else {
		e = s.find(key, h)
	}
	if e >= 0 {
		if s.full {
			s.bump(e)
		} else {
			s.ents[e].n++
		}
		return e, true
	}
	if len(s.ents) < s.size { // then s is not full
		if 4*(len(s.ents)+1) > len(s.table) {
			s.grow(2 * len(s.table))
		}
		e := int32(len(s.ents))
		s.ents = append(s.ents, heldKey{key, h, 1})
		s.insert(e)
		return e, false
	}
	if !s.full {
		s.toBuckets()
		s.full = true
	}
	e = s.bk[s.lowest].head
	s.remove(e)
	s.ents[e].key, s.ents[e].hash = key, h
	s.insert(e)
	s.bump(e)
	return e, false
}

// toBuckets puts every entry in the bucket of its counter.
func (s *summary) toBuckets() {
	s.order = s.order[:0]
	for e := range s.ents {
		s.order = append(s.order, int32(e))
	}
	slices.SortFunc(s.order, func(a, b int32) int { return cmp.Compare(s.ents[a].n, s.ents[b].n) })
	s.link = append(s.link[:0], make([]entryLinks, len(s.ents))...)
	b := int32(-1)
	for _, e := range s.order {
		if n := s.ents[e].n; b < 0 || s.bk[b].count != n {
			b = s.newBucket(n, b)
		}
		s.linkTo(e, b)
	}
}

// counter returns entry e's counter.
func (s *summary) counter(e int) int64 {
	if !s.full {
		return s.ents[e].n
	}
	return s.bk[s.link[e].bucket].count
}

// floor is the smallest counter once a key has taken another's counter,
// and 0 before (the counters are then exact): every counter overestimates
// its key by at most floor, and a key not held had at most floor requests.
func (s *summary) floor() int64 {
	if !s.full {
		return 0
	}
	return s.bk[s.lowest].count
}

// drain calls fn with each held key and its counter minus floor (a count
// that never exceeds the key's true count and falls short of it by at
// most total/size), skipping those at zero, then empties s.
func (s *summary) drain(fn func(key string, n int64)) {
	f := s.floor()
	for e, h := range s.ents {
		if n := s.counter(e) - f; n > 0 {
			fn(h.key, n)
		}
	}
	clear(s.ents) // let the strings go
	s.ents, s.link, s.bk = s.ents[:0], s.link[:0], s.bk[:0]
	s.free, s.lowest = -1, -1
	clear(s.table)
	s.total, s.full = 0, false
	s.drains++
}
