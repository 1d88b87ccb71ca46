package memstore

import (
	"math"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// One entry type per algorithm, each holding the bookkeeping every entry
// shares (entry) and the state of its own algorithm only, kept under its
// shard's lock with times in nanoseconds. The decisions are algo's
// (Window, Log, Fixed, Cell): the methods here only load and save the
// state. newState, indexed by the policy's limiter.AlgorithmID, makes the
// entry when a key is first seen; from then on the entry's methods serve
// it, and no call compares algorithms.

// keyState is one key's entry under one policy.
type keyState interface {
	base() *entry
	allow(now int64, p *limiter.Policy, key string, limit, cost int64) limiter.Decision
	peek(now int64, p *limiter.Policy, key string, limit int64) limiter.Decision
	refund(now int64, p *limiter.Policy, key string, c limiter.Charge)
}

// newState makes a new key's entry for each algorithm.
var newState = [limiter.NumAlgorithms]func(p *limiter.Policy) keyState{
	limiter.SlidingWindowID: newWindowEntry,
	limiter.SlidingLogID:    func(*limiter.Policy) keyState { return new(logEntry) },
	limiter.FixedWindowID:   func(*limiter.Policy) keyState { return new(fixedEntry) },
	limiter.GCRAID:          func(*limiter.Policy) keyState { return new(cellEntry) },
}

// windowEntry keeps Buckets+1 sub-window counts in a ring: bucket c in
// slot c % (Buckets+1). The arithmetic is algo.Window's. The ring lives
// in the entry itself for up to DefaultBuckets buckets.
//
// A call in the bucket of the last call does not scan the ring: the entry
// keeps algo.Window.ViewAt's Inside and Newest for that bucket, updated as
// the ring changes, and Oldest is the one slot that can hold bucket
// cur-Buckets. A scan recomputes them when the bucket changes, and
// whenever an update could not keep them equal to the scan's (a sum near
// MaxInt64, a refund that empties the newest bucket, a bucket ahead of the
// clock overwritten): cur = -1 marks them stale.
type windowEntry struct {
	entry
	size int64 // the bucket size (ns), which the entry key fixes
	// The bucket of the last call and its slot: while calls fall in it,
	// finding now's bucket takes no division, and inside and newest hold.
	cur    int64
	slot   int32
	n      int32          // slots in the ring: Buckets+1
	inside int64          // ViewAt(ring, _, cur).Inside
	newest int64          // ViewAt(ring, _, cur).Newest
	more   *[]algo.Bucket // the ring, when it does not fit in inline
	inline [limiter.DefaultBuckets + 1]algo.Bucket
}

func newWindowEntry(p *limiter.Policy) keyState {
	w := &windowEntry{size: algo.WindowOf(p, time.Nanosecond).Size, cur: -1, n: int32(p.Buckets + 1)}
	if int(w.n) > len(w.inline) {
		ring := make([]algo.Bucket, w.n)
		w.more = &ring
	}
	return w
}

func (w *windowEntry) base() *entry { return &w.entry }

// ring returns the entry's buckets.
func (w *windowEntry) ring() []algo.Bucket {
	if w.more != nil {
		return *w.more
	}
	return w.inline[:w.n]
}

// win is the entry's arithmetic.
func (w *windowEntry) win() algo.Window {
	return algo.Window{Size: w.size, Buckets: int(w.n) - 1, Tick: time.Nanosecond}
}

// view returns now's bucket, its slot in the ring and the ring's view at
// now: from the kept sums while now is in the bucket of the last call,
// else from a scan, whose sums are kept.
func (w *windowEntry) view(win algo.Window, now int64) (int64, *algo.Bucket, algo.WindowView) {
	ring := w.ring()
	if d := now - w.cur*w.size; d < 0 || d >= w.size || w.cur < 0 {
		c := now / w.size
		v := win.ViewAt(ring, now, c)
		w.cur, w.slot = c, int32(c%int64(w.n))
		w.inside, w.newest = v.Inside, v.Newest
		return c, &ring[w.slot], v
	}
	v := algo.WindowView{Inside: w.inside, Frac: win.Frac(now, w.cur), Newest: w.newest}
	o := w.slot + 1 // the slot of bucket cur-Buckets, the only one that can hold it
	if o == w.n {
		o = 0
	}
	if b := ring[o]; b.Index == w.cur-int64(w.n-1) && b.Count > 0 {
		v.Oldest = b.Count
	}
	return w.cur, &ring[w.slot], v
}

func (w *windowEntry) allow(now int64, _ *limiter.Policy, _ string, limit, cost int64) limiter.Decision {
	win := w.win()
	capN := win.Cap(limit)
	c, b, v := w.view(win, now)
	d := limiter.Decision{Limit: limit}
	if win.FitsCap(v, limit, capN, cost) {
		if b.Index != c {
			if b.Count > 0 && b.Index > c {
				w.cur = -1 // a bucket ahead of the clock, counted inside, leaves the ring
			}
			*b = algo.Bucket{Index: c}
		}
		if b.Count < 0 || w.inside > math.MaxInt64-cost {
			w.cur = -1 // b holds a wrapped count, or inside saturates: a scan says what they are
		}
		b.Count += cost
		v.Inside += cost
		v.Newest = c
		if b.Count > 0 {
			w.inside += cost // b held 0 (not in the sums) or more (in them): either way, cost more
			w.newest = max(w.newest, c)
		} else {
			w.cur = -1
		}
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = win.RetryAfter(w.ring(), now, limit, cost)
	}
	win.FillCap(&d, v, now, limit, capN)
	return d
}

func (w *windowEntry) peek(now int64, _ *limiter.Policy, _ string, limit int64) limiter.Decision {
	d := limiter.Decision{Limit: limit}
	win := w.win()
	win.Fill(&d, win.View(w.ring(), now), now, limit)
	return d
}

func (w *windowEntry) refund(_ int64, _ *limiter.Policy, _ string, c limiter.Charge) {
	ix := c.At / w.size
	b := &w.ring()[ix%int64(w.n)]
	if b.Index != ix {
		return
	}
	was := b.Count
	b.Count = max(0, b.Count-c.Cost)
	n := was - b.Count // the units that left b, which was in the sums if was > 0 and ix >= cur-Buckets
	switch k := int64(w.n - 1); {
	case w.cur < 0 || ix < w.cur-k:
		// The sums are stale, or b is not in them.
	case was <= 0 || n <= 0 || w.inside == math.MaxInt64 || (b.Count == 0 && ix == w.newest):
		w.cur = -1 // b was not in the sums, inside saturated, or the newest bucket emptied: rescan
	case ix > w.cur-k:
		w.inside -= n
	}
	// Bucket cur-Buckets (ix == cur-k) is read from the ring by view.
}

// logEntry keeps (time, units) pairs of admissions inside the window;
// the arithmetic is algo.Log's.
type logEntry struct {
	entry
	times []int64
	units []int64
	total int64
}

func (l *logEntry) base() *entry { return &l.entry }

func (l *logEntry) trim(now int64, lg algo.Log) {
	i := 0
	for i < len(l.times) && !lg.Inside(l.times[i], now) {
		l.total -= l.units[i]
		i++
	}
	if i > 0 {
		l.times = append(l.times[:0], l.times[i:]...)
		l.units = append(l.units[:0], l.units[i:]...)
	}
}

func (l *logEntry) newest() int64 {
	if n := len(l.times); n > 0 {
		return l.times[n-1]
	}
	return 0
}

func (l *logEntry) allow(now int64, p *limiter.Policy, _ string, limit, cost int64) limiter.Decision {
	lg := algo.LogOf(p, time.Nanosecond)
	l.trim(now, lg)
	d := limiter.Decision{Limit: limit}
	if lg.Fits(l.total, limit, cost) {
		if n := len(l.times); n > 0 && l.times[n-1] == now {
			l.units[n-1] += cost
		} else {
			l.times = append(l.times, now)
			l.units = append(l.units, cost)
		}
		l.total += cost
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = lg.RetryAfter(l.times, l.units, l.total, now, limit, cost)
	}
	lg.Fill(&d, l.total, l.newest(), now, limit)
	return d
}

func (l *logEntry) peek(now int64, p *limiter.Policy, _ string, limit int64) limiter.Decision {
	lg := algo.LogOf(p, time.Nanosecond)
	l.trim(now, lg)
	d := limiter.Decision{Limit: limit}
	lg.Fill(&d, l.total, l.newest(), now, limit)
	return d
}

func (l *logEntry) refund(_ int64, _ *limiter.Policy, _ string, c limiter.Charge) {
	for i := len(l.times) - 1; i >= 0; i-- {
		if l.times[i] == c.At {
			n := min(l.units[i], c.Cost)
			l.units[i] -= n
			l.total -= n
			return
		}
	}
}

// fixedEntry counts units in the window that started at start; the
// arithmetic is algo.Fixed's.
type fixedEntry struct {
	entry
	start, count int64
}

func (f *fixedEntry) base() *entry { return &f.entry }

func (f *fixedEntry) roll(now int64, fw algo.Fixed) {
	if start := fw.Start(now); start != f.start {
		f.start, f.count = start, 0
	}
}

func (f *fixedEntry) allow(now int64, p *limiter.Policy, _ string, limit, cost int64) limiter.Decision {
	fw := algo.FixedOf(p, time.Nanosecond)
	f.roll(now, fw)
	d := fw.Decide(f.count, now, limit, cost)
	if d.Allowed {
		f.count += cost
	}
	return d
}

func (f *fixedEntry) peek(now int64, p *limiter.Policy, _ string, limit int64) limiter.Decision {
	fw := algo.FixedOf(p, time.Nanosecond)
	f.roll(now, fw)
	d := limiter.Decision{Limit: limit}
	fw.Fill(&d, f.count, now, limit)
	return d
}

func (f *fixedEntry) refund(_ int64, p *limiter.Policy, _ string, c limiter.Charge) {
	if algo.FixedOf(p, time.Nanosecond).Start(c.At) == f.start {
		f.count = max(0, f.count-c.Cost)
	}
}

// cellEntry keeps the theoretical arrival time of the next unit; the
// arithmetic is algo.Cell's.
type cellEntry struct {
	entry
	tat int64
}

func (g *cellEntry) base() *entry { return &g.entry }

func (g *cellEntry) allow(now int64, p *limiter.Policy, key string, limit, cost int64) limiter.Decision {
	var d limiter.Decision
	g.tat, d = algo.CellOf(p, key, limit, time.Nanosecond).Decide(g.tat, now, cost)
	d.Limit = limit
	return d
}

func (g *cellEntry) peek(now int64, p *limiter.Policy, key string, limit int64) limiter.Decision {
	d := limiter.Decision{Limit: limit}
	algo.CellOf(p, key, limit, time.Nanosecond).Fill(&d, g.tat, now)
	return d
}

func (g *cellEntry) refund(now int64, p *limiter.Policy, key string, c limiter.Charge) {
	g.tat = algo.CellOf(p, key, p.LimitFor(key), time.Nanosecond).Refund(g.tat, now, c.Cost)
}
