package topk

// summary is a Space-Saving summary (Metwally, Agrawal and El Abbadi,
// "Efficient computation of frequent and top-k elements in data streams",
// 2005) with room for size keys: a key it holds has its own counter; a new
// key takes the counter of the least counted key and adds one to it. Every
// counter is an overestimate, by at most the smallest counter, which is at
// most total/size: so every key with more than total/size requests is held.
//
// The counters live in a min-heap (the least counted key is at the root)
// and are found through an open-addressing table keyed by the key's Hash,
// so adding a key allocates nothing once the summary has filled up and
// costs one probe and a short sift. A summary is not safe for concurrent
// use.
type summary struct {
	size  int
	keys  []string
	hash  []uint64
	count []int64
	heap  []int32 // entry indices, a min-heap on count
	pos   []int32 // heap position of each entry
	table []int32 // entry index + 1 by hash, linear probing; 0 is free
	mask  uint64
	total int64
}

func newSummary(size int) *summary {
	n := 1
	for n < 2*size {
		n <<= 1
	}
	return &summary{size: size, table: make([]int32, n), mask: uint64(n - 1)}
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

// add counts one request for key, whose Hash is h.
func (s *summary) add(key string, h uint64) {
	s.total++
	if e := s.find(key, h); e >= 0 {
		s.count[e]++
		s.down(int(s.pos[e]))
		return
	}
	if len(s.keys) < s.size {
		e := int32(len(s.keys))
		s.keys = append(s.keys, key)
		s.hash = append(s.hash, h)
		s.count = append(s.count, 1)
		s.pos = append(s.pos, int32(len(s.heap)))
		s.heap = append(s.heap, e)
		s.up(len(s.heap) - 1)
		s.insert(e)
		return
	}
	e := s.heap[0]
	s.remove(e)
	s.keys[e], s.hash[e] = key, h
	s.count[e]++
	s.insert(e)
	s.down(0)
}

func (s *summary) less(i, j int) bool { return s.count[s.heap[i]] < s.count[s.heap[j]] }

func (s *summary) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.pos[s.heap[i]] = int32(i)
	s.pos[s.heap[j]] = int32(j)
}

func (s *summary) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			return
		}
		s.swap(i, parent)
		i = parent
	}
}

func (s *summary) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && s.less(r, l) {
			c = r
		}
		if !s.less(c, i) {
			return
		}
		s.swap(i, c)
		i = c
	}
}

// floor is the smallest counter of a full summary, and 0 otherwise: every
// counter overestimates its key by at most floor, and a key not held had
// at most floor requests.
func (s *summary) floor() int64 {
	if len(s.keys) < s.size || len(s.heap) == 0 {
		return 0
	}
	return s.count[s.heap[0]]
}

// drain calls fn with each held key and its counter minus floor (a count
// that never exceeds the key's true count and falls short of it by at
// most total/size), skipping those at zero, then empties s.
func (s *summary) drain(fn func(key string, n int64)) {
	f := s.floor()
	for e, k := range s.keys {
		if n := s.count[e] - f; n > 0 {
			fn(k, n)
		}
	}
	clear(s.keys) // let the strings go
	s.keys, s.hash, s.count, s.heap, s.pos = s.keys[:0], s.hash[:0], s.count[:0], s.heap[:0], s.pos[:0]
	clear(s.table)
	s.total = 0
}
