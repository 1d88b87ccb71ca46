package memstore

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// The algorithms below work on one entry, under its shard's lock, with
// times in nanoseconds. They mirror the Lua scripts of limiter/redisstore;
// the conformance suite in limiter/limitertest holds both to one behaviour.

// slidingWindow keeps Buckets+1 sub-window counts in a ring; the
// arithmetic is limiter.Window's.
type slidingWindow struct {
	idx    []int64 // bucket index (time / bucket size) of each slot
	counts []int64
}

// buckets lists the ring's buckets into buf.
func (w *slidingWindow) buckets(buf []limiter.Bucket) []limiter.Bucket {
	for i, ix := range w.idx {
		buf = append(buf, limiter.Bucket{Index: ix, Count: w.counts[i]})
	}
	return buf
}

func (w *slidingWindow) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	win := limiter.WindowOf(p, time.Nanosecond)
	k := p.Buckets
	if len(w.idx) != k+1 {
		w.idx, w.counts = make([]int64, k+1), make([]int64, k+1)
	}
	var buf [16]limiter.Bucket
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
	win := limiter.WindowOf(p, time.Nanosecond)
	var buf [16]limiter.Bucket
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

// slidingLog keeps (time, units) pairs of admissions inside the window.
type slidingLog struct {
	times []int64
	units []int64
	total int64
}

func (l *slidingLog) trim(now, window int64) {
	i := 0
	for i < len(l.times) && l.times[i] <= now-window {
		l.total -= l.units[i]
		i++
	}
	if i > 0 {
		l.times = append(l.times[:0], l.times[i:]...)
		l.units = append(l.units[:0], l.units[i:]...)
	}
}

func (l *slidingLog) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	window := int64(p.Window)
	l.trim(now, window)
	d := limiter.Decision{Limit: limit}
	if l.total+cost <= limit {
		if n := len(l.times); n > 0 && l.times[n-1] == now {
			l.units[n-1] += cost
		} else {
			l.times = append(l.times, now)
			l.units = append(l.units, cost)
		}
		l.total += cost
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else if cost > limit {
		d.RetryAfter = p.Window
	} else {
		// Enough of the oldest entries must leave the window.
		need, i := l.total+cost-limit, 0
		for ; i < len(l.times)-1 && need > l.units[i]; i++ {
			need -= l.units[i]
		}
		d.RetryAfter = time.Duration(l.times[i] + window - now)
	}
	l.fill(&d, now, window, limit)
	return d
}

func (l *slidingLog) fill(d *limiter.Decision, now, window, limit int64) {
	d.Count = l.total
	d.Remaining = max(0, limit-l.total)
	if n := len(l.times); n > 0 {
		d.ResetAfter = time.Duration(l.times[n-1] + window - now)
	}
}

func (l *slidingLog) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	l.trim(now, int64(p.Window))
	d := limiter.Decision{Limit: limit}
	l.fill(&d, now, int64(p.Window), limit)
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

// fixedWindow counts units in the window aligned to a multiple of Window.
type fixedWindow struct {
	start, count int64
}

func (f *fixedWindow) roll(now, window int64) {
	if start := now - now%window; start != f.start {
		f.start, f.count = start, 0
	}
}

func (f *fixedWindow) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	window := int64(p.Window)
	f.roll(now, window)
	d := limiter.Decision{Limit: limit}
	if f.count+cost <= limit {
		f.count += cost
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = time.Duration(f.start + window - now)
		if cost > limit {
			d.RetryAfter = p.Window
		}
	}
	f.fill(&d, now, window, limit)
	return d
}

func (f *fixedWindow) fill(d *limiter.Decision, now, window, limit int64) {
	d.Count = f.count
	d.Remaining = max(0, limit-f.count)
	if f.count > 0 {
		d.ResetAfter = time.Duration(f.start + window - now)
	}
}

func (f *fixedWindow) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	f.roll(now, int64(p.Window))
	d := limiter.Decision{Limit: limit}
	f.fill(&d, now, int64(p.Window), limit)
	return d
}

func (f *fixedWindow) refund(p *limiter.Policy, c limiter.Charge) {
	if c.At-c.At%int64(p.Window) == f.start {
		f.count = max(0, f.count-c.Cost)
	}
}

// gcra keeps the theoretical arrival time of the next unit.
type gcra struct {
	tat int64
}

func gcraParams(p *limiter.Policy, key string, limit int64) (interval, burst int64) {
	return int64(p.Window) / limit, p.BurstFor(key)
}

func (g *gcra) allow(now int64, p *limiter.Policy, key string, limit, cost int64) limiter.Decision {
	interval, burst := gcraParams(p, key, limit)
	tat := max(g.tat, now)
	newTat := tat + interval*cost
	allowAt := newTat - interval*burst
	d := limiter.Decision{Limit: limit}
	if now >= allowAt {
		g.tat = newTat
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = time.Duration(allowAt - now)
		if cost > burst {
			d.RetryAfter = p.Window
		}
	}
	g.fill(&d, now, interval, burst)
	return d
}

func (g *gcra) fill(d *limiter.Decision, now, interval, burst int64) {
	used := max(0, g.tat-now)
	d.Count = (used + interval - 1) / interval
	d.Remaining = max(0, burst-d.Count)
	d.ResetAfter = time.Duration(used)
}

func (g *gcra) peek(now int64, p *limiter.Policy, key string, limit int64) limiter.Decision {
	interval, burst := gcraParams(p, key, limit)
	d := limiter.Decision{Limit: limit}
	g.fill(&d, now, interval, burst)
	return d
}

func (g *gcra) refund(now int64, p *limiter.Policy, key string, limit int64, c limiter.Charge) {
	interval, _ := gcraParams(p, key, limit)
	g.tat = max(now, g.tat-interval*c.Cost)
}
