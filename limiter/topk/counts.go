package topk

import (
	"cmp"
	"slices"
	"strings"
)

// Entry is a key and its count in a summary.
type Entry struct {
	Key string
	N   int64
}

// counts is a Misra-Gries summary (the mergeable form of Space-Saving,
// Agarwal et al., "Mergeable summaries", 2012) holding at most 2*size keys
// between reductions. Counts are added as they come; reduce subtracts the
// (size+1)-th largest count v from every count and drops those left at
// zero or below. Each reduction takes at least (size+1)*v from the total,
// so over any sequence of additions of total mass M a key loses at most
// M/(size+1) in all: every count stays within M/(size+1) below the key's
// true count, and never above it.
type counts struct {
	size    int
	m       map[string]int64
	total   int64 // requests behind the additions (at least their mass)
	scratch []int64
}

func newCounts(size int) *counts { return &counts{size: size, m: map[string]int64{}} }

func (c *counts) add(key string, n int64) {
	c.m[key] += n
	if len(c.m) > 2*c.size {
		c.reduce()
	}
}

func (c *counts) reduce() {
	if len(c.m) <= c.size {
		return
	}
	c.scratch = c.scratch[:0]
	for _, n := range c.m {
		c.scratch = append(c.scratch, n)
	}
	slices.SortFunc(c.scratch, func(a, b int64) int { return cmp.Compare(b, a) })
	v := c.scratch[c.size]
	for k, n := range c.m {
		if n <= v {
			delete(c.m, k)
		} else {
			c.m[k] = n - v
		}
	}
}

// view returns the keys worth publishing, busiest first: those whose count
// exceeds total/(size+1), and at least the keep busiest. Leaving out a key
// at or below total/(size+1) lowers its published count by at most that.
func (c *counts) view(keep int) []Entry {
	c.reduce()
	out := make([]Entry, 0, len(c.m))
	for k, n := range c.m {
		out = append(out, Entry{k, n})
	}
	sortEntries(out)
	threshold := c.total / int64(c.size+1)
	cut := len(out)
	for cut > keep && out[cut-1].N <= threshold {
		cut--
	}
	return out[:cut]
}

// sortEntries orders entries by count, largest first, then by key.
func sortEntries(e []Entry) {
	slices.SortFunc(e, func(a, b Entry) int {
		if a.N != b.N {
			return cmp.Compare(b.N, a.N)
		}
		return strings.Compare(a.Key, b.Key)
	})
}
