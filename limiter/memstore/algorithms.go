package memstore

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// The state of one entry, kept under its shard's lock, with times in
// nanoseconds. The decisions are limiter's (Window, Log, Fixed, Cell): this
// file only loads and saves the state.

// slidingWindow keeps Buckets+1 sub-window counts in a ring; the
// arithmetic is algo.Window's.
type slidingWindow struct {
	idx    []int64 // bucket index (time / bucket size) of each slot
	counts []int64
}

// buckets lists the ring's buckets into buf.
func (w *slidingWindow) buckets(buf []algo.Bucket) []algo.Bucket {
	for i, ix := range w.idx {
		buf = append(buf, algo.Bucket{Index: ix, Count: w.counts[i]})
	}
	return buf
}

func (w *slidingWindow) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	win := algo.WindowOf(p, time.Nanosecond)
	k := p.Buckets
	if len(w.idx) != k+1 {
		w.idx, w.counts = make([]int64, k+1), make([]int64, k+1)
	}
	var buf [16]algo.Bucket
	bs := w.buckets(buf[:0])
	v := win.View(bs, now)
	d := limiter.Decision{Limit: limit}
	if win.Fits(v, limit, cost) {
		c := now / win.Size
		slot := int(c % int64(k+1))
		if w.idx[slot] != c {
			w.idx[slot], w.counts[slot] = c, 0
		}
		w.counts[slot] += cost
		v.Inside += cost
		v.Newest = c
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = win.RetryAfter(bs, now, limit, cost)
	}
	win.Fill(&d, v, now, limit)
	return d
}

func (w *slidingWindow) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	d := limiter.Decision{Limit: limit}
	if len(w.idx) != p.Buckets+1 {
		d.Remaining = limit
		return d
	}
	win := algo.WindowOf(p, time.Nanosecond)
	var buf [16]algo.Bucket
	win.Fill(&d, win.View(w.buckets(buf[:0]), now), now, limit)
	return d
}

func (w *slidingWindow) refund(p *limiter.Policy, c limiter.Charge) {
	if len(w.idx) != p.Buckets+1 {
		return
	}
	ix := c.At / int64(p.BucketSize())
	slot := int(ix % int64(p.Buckets+1))
	if w.idx[slot] == ix {
		w.counts[slot] = max(0, w.counts[slot]-c.Cost)
	}
}

// slidingLog keeps (time, units) pairs of admissions inside the window;
// the arithmetic is algo.Log's.
type slidingLog struct {
	times []int64
	units []int64
	total int64
}

func (l *slidingLog) trim(now int64, lg algo.Log) {
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

func (l *slidingLog) newest() int64 {
	if n := len(l.times); n > 0 {
		return l.times[n-1]
	}
	return 0
}

func (l *slidingLog) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
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

func (l *slidingLog) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	lg := algo.LogOf(p, time.Nanosecond)
	l.trim(now, lg)
	d := limiter.Decision{Limit: limit}
	lg.Fill(&d, l.total, l.newest(), now, limit)
	return d
}

func (l *slidingLog) refund(c limiter.Charge) {
	for i := len(l.times) - 1; i >= 0; i-- {
		if l.times[i] == c.At {
			n := min(l.units[i], c.Cost)
			l.units[i] -= n
			l.total -= n
			return
		}
	}
}

// fixedWindow counts units in the window that started at start; the
// arithmetic is algo.Fixed's.
type fixedWindow struct {
	start, count int64
}

func (f *fixedWindow) roll(now int64, fw algo.Fixed) {
	if start := fw.Start(now); start != f.start {
		f.start, f.count = start, 0
	}
}

func (f *fixedWindow) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	fw := algo.FixedOf(p, time.Nanosecond)
	f.roll(now, fw)
	d := fw.Decide(f.count, now, limit, cost)
	if d.Allowed {
		f.count += cost
	}
	return d
}

func (f *fixedWindow) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	fw := algo.FixedOf(p, time.Nanosecond)
	f.roll(now, fw)
	d := limiter.Decision{Limit: limit}
	fw.Fill(&d, f.count, now, limit)
	return d
}

func (f *fixedWindow) refund(p *limiter.Policy, c limiter.Charge) {
	if algo.FixedOf(p, time.Nanosecond).Start(c.At) == f.start {
		f.count = max(0, f.count-c.Cost)
	}
}

// gcra keeps the theoretical arrival time of the next unit; the arithmetic
// is algo.Cell's.
type gcra struct {
	tat int64
}

func (g *gcra) allow(now int64, p *limiter.Policy, key string, limit, cost int64) limiter.Decision {
	var d limiter.Decision
	g.tat, d = algo.CellOf(p, key, limit, time.Nanosecond).Decide(g.tat, now, cost)
	d.Limit = limit
	return d
}

func (g *gcra) peek(now int64, p *limiter.Policy, key string, limit int64) limiter.Decision {
	d := limiter.Decision{Limit: limit}
	algo.CellOf(p, key, limit, time.Nanosecond).Fill(&d, g.tat, now)
	return d
}

func (g *gcra) refund(now int64, p *limiter.Policy, key string, limit int64, c limiter.Charge) {
	g.tat = algo.CellOf(p, key, limit, time.Nanosecond).Refund(g.tat, now, c.Cost)
}
