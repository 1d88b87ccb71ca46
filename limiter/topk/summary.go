package topk

// summary is a Space-Saving summary (Metwally, Agrawal and El Abbadi,
// "Efficient computation of frequent and top-k elements in data streams",
// 2005) with room for size keys: a key it holds has its own counter; a new
// key takes the counter of a least counted key and adds one to it. Every
// counter is an overestimate, by at most the smallest counter, which is at
// most total/size: so every key with more than total/size requests is held.
//
// It is the paper's Stream-Summary: keys with equal counters share a
// bucket, and the buckets form a list in increasing order, so counting a
// request moves one key to the next bucket in O(1). Keys are found through
// an open-addressing table on their Hash. Everything lives in slices of
// int32 indices, so once the summary has filled up, counting allocates
// nothing. A summary is not safe for concurrent use.
type summary struct {
	size int
	// Per entry.
	keys   []string
	hash   []uint64
	bucket []int32
	prev   []int32 // neighbours in the bucket's entry list; -1 ends it
	next   []int32
	// Per bucket: a free list reuses them.
	count  []int64
	head   []int32 // first entry
	bprev  []int32 // neighbouring buckets, in increasing count; -1 ends it
	bnext  []int32
	free   int32   // first free bucket, chained through bnext
	lowest int32   // the bucket of the smallest counter, -1 when empty
	table  []int32 // entry index + 1 by hash, linear probing; 0 is free
	mask   uint64
	total  int64
	full   bool // a key has taken another's counter
}

func newSummary(size int) *summary {
	n := 1
	for n < 4*size {
		n <<= 1
	}
	return &summary{size: size, table: make([]int32, n), mask: uint64(n - 1), free: -1, lowest: -1}
}

func (s *summary) find(key string, h uint64) int32 {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		e := s.table[i] - 1
		if e < 0 {
			return -1
		}
		if s.hash[e] == h && s.keys[e] == key {
			return e
		}
	}
}

func (s *summary) insert(e int32) {
	i := s.hash[e] & s.mask
	for s.table[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.table[i] = e + 1
}

// remove takes entry e out of the table, shifting later entries of its
// probe run back so that no tombstone is left.
func (s *summary) remove(e int32) {
	i := s.hash[e] & s.mask
	for s.table[i] != e+1 {
		i = (i + 1) & s.mask
	}
	for {
		s.table[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			f := s.table[j] - 1
			if f < 0 {
				return
			}
			home := s.hash[f] & s.mask
			// f may move into the hole at i unless its home lies
			// cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				s.table[i] = f + 1
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
		s.free = s.bnext[b]
		s.count[b], s.head[b] = c, -1
	} else {
		b = int32(len(s.count))
		s.count = append(s.count, c)
		s.head = append(s.head, -1)
		s.bprev = append(s.bprev, -1)
		s.bnext = append(s.bnext, -1)
	}
	var nx int32
	if after < 0 {
		nx = s.lowest
		s.lowest = b
	} else {
		nx = s.bnext[after]
		s.bnext[after] = b
	}
	s.bprev[b], s.bnext[b] = after, nx
	if nx >= 0 {
		s.bprev[nx] = b
	}
	return b
}

// unlink takes entry e out of its bucket, freeing the bucket when it
// empties.
func (s *summary) unlink(e int32) {
	b := s.bucket[e]
	if p := s.prev[e]; p >= 0 {
		s.next[p] = s.next[e]
	} else {
		s.head[b] = s.next[e]
	}
	if n := s.next[e]; n >= 0 {
		s.prev[n] = s.prev[e]
	}
	if s.head[b] >= 0 {
		return
	}
	p, n := s.bprev[b], s.bnext[b]
	if p >= 0 {
		s.bnext[p] = n
	} else {
		s.lowest = n
	}
	if n >= 0 {
		s.bprev[n] = p
	}
	s.bnext[b] = s.free
	s.free = b
}

func (s *summary) link(e, b int32) {
	s.bucket[e] = b
	s.prev[e], s.next[e] = -1, s.head[b]
	if h := s.head[b]; h >= 0 {
		s.prev[h] = e
	}
	s.head[b] = e
}

// bump adds one to entry e's counter.
func (s *summary) bump(e int32) {
	b := s.bucket[e]
	c := s.count[b] + 1
	nb := s.bnext[b]
	if nb < 0 || s.count[nb] != c {
		nb = s.newBucket(c, b)
	}
	s.unlink(e)
	s.link(e, nb)
}

// add counts one request for key, whose Hash is h, and reports whether
// s held key already.
func (s *summary) add(key string, h uint64) (held bool) {
	s.total++
	if e := s.find(key, h); e >= 0 {
		s.bump(e)
		return true
	}
	if len(s.keys) < s.size {
		e := int32(len(s.keys))
		s.keys = append(s.keys, key)
		s.hash = append(s.hash, h)
		s.bucket = append(s.bucket, -1)
		s.prev = append(s.prev, -1)
		s.next = append(s.next, -1)
		b := s.lowest
		if b < 0 || s.count[b] != 1 {
			b = s.newBucket(1, -1)
		}
		s.link(e, b)
		s.insert(e)
		return false
	}
	s.full = true
	e := s.head[s.lowest]
	s.remove(e)
	s.keys[e], s.hash[e] = key, h
	s.insert(e)
	s.bump(e)
	return false
}

// counter returns entry e's counter.
func (s *summary) counter(e int) int64 { return s.count[s.bucket[e]] }

// floor is the smallest counter once a key has taken another's counter,
// and 0 before (the counters are then exact): every counter overestimates
// its key by at most floor, and a key not held had at most floor requests.
func (s *summary) floor() int64 {
	if !s.full {
		return 0
	}
	return s.count[s.lowest]
}

// drain calls fn with each held key and its counter minus floor (a count
// that never exceeds the key's true count and falls short of it by at
// most total/size), skipping those at zero, then empties s.
func (s *summary) drain(fn func(key string, n int64)) {
	f := s.floor()
	for e, k := range s.keys {
		if n := s.counter(e) - f; n > 0 {
			fn(k, n)
		}
	}
	clear(s.keys) // let the strings go
	s.keys, s.hash, s.bucket, s.prev, s.next = s.keys[:0], s.hash[:0], s.bucket[:0], s.prev[:0], s.next[:0]
	s.count, s.head, s.bprev, s.bnext = s.count[:0], s.head[:0], s.bprev[:0], s.bnext[:0]
	s.free, s.lowest = -1, -1
	clear(s.table)
	s.total, s.full = 0, false
}
