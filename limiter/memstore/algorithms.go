package memstore

import (
	"math"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// The algorithms below work on one entry, under its shard's lock, with
// times in nanoseconds. They mirror the Lua scripts of limiter/redisstore;
// the conformance suite in limiter/limitertest holds both to one behaviour.

const eps = 1e-9

// slidingWindow keeps Buckets+1 sub-window counts in a ring.
type slidingWindow struct {
	idx    []int64 // bucket index (time / bucket size) of each slot
	counts []int64
}

type swView struct {
	inside, oldest int64   // buckets fully inside; the one partly inside
	frac           float64 // part of the oldest bucket still inside, in (0, 1]
	newest         int64   // newest non-empty bucket index, or -1
}

func (w *slidingWindow) view(now, b int64, k int) swView {
	c := now / b
	v := swView{frac: float64((c+1)*b-now) / float64(b), newest: -1}
	for i, ix := range w.idx {
		n := w.counts[i]
		if n == 0 {
			continue
		}
		switch {
		case ix > c-int64(k):
			v.inside += n
		case ix == c-int64(k):
			v.oldest += n
		default:
			continue
		}
		v.newest = max(v.newest, ix)
	}
	return v
}

func (v swView) estimate() float64 { return float64(v.inside) + float64(v.oldest)*v.frac }

func swCap(limit int64, k int) int64 { return limit + limit/int64(k) }

func (w *slidingWindow) allow(now int64, p *limiter.Policy, limit, cost int64) limiter.Decision {
	b, k := int64(p.BucketSize()), p.Buckets
	if len(w.idx) != k+1 {
		w.idx, w.counts = make([]int64, k+1), make([]int64, k+1)
	}
	v := w.view(now, b, k)
	capN := swCap(limit, k)
	d := limiter.Decision{Limit: limit}
	if v.estimate()+float64(cost) <= float64(limit)+eps && v.inside+v.oldest+cost <= capN {
		c := now / b
		slot := int(c % int64(k+1))
		if w.idx[slot] != c {
			w.idx[slot], w.counts[slot] = c, 0
		}
		w.counts[slot] += cost
		v.inside += cost
		v.newest = c
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = time.Duration(w.retryAfter(now, b, k, limit, cost))
	}
	w.fill(&d, v, now, b, k, limit)
	return d
}

func (w *slidingWindow) fill(d *limiter.Decision, v swView, now, b int64, k int, limit int64) {
	est := v.estimate()
	d.Count = int64(math.Ceil(est - eps))
	d.Remaining = max(0, min(int64(math.Floor(float64(limit)-est+eps)), swCap(limit, k)-v.inside-v.oldest))
	if v.newest >= 0 {
		d.ResetAfter = time.Duration((v.newest+int64(k)+1)*b - now)
	}
}

// retryAfter returns the time until cost more units would be admitted if no
// other request came: the oldest bucket's weight shrinks linearly, and whole
// buckets leave the window at bucket boundaries.
func (w *slidingWindow) retryAfter(now, b int64, k int, limit, cost int64) int64 {
	if cost > limit {
		return int64(k+1) * b
	}
	capN := swCap(limit, k)
	c := now / b
	for j := int64(0); j <= int64(k)+1; j++ {
		cj := c + j
		start := max(now, cj*b)
		var inside, oldest int64
		for i, ix := range w.idx {
			switch {
			case ix > cj-int64(k):
				inside += w.counts[i]
			case ix == cj-int64(k):
				oldest += w.counts[i]
			}
		}
		if inside+oldest+cost > capN {
			continue
		}
		room := float64(limit - cost - inside)
		if room < 0 {
			continue
		}
		t := start
		if oldest > 0 && room < float64(oldest) {
			// weight(t) = ((cj+1)*b - t) / b must fall to room/oldest.
			t = max(start, (cj+1)*b-int64(math.Floor(room/float64(oldest)*float64(b))))
		}
		if t < (cj+1)*b {
			return t - now
		}
	}
	return int64(k+1) * b
}

func (w *slidingWindow) peek(now int64, p *limiter.Policy, limit int64) limiter.Decision {
	b, k := int64(p.BucketSize()), p.Buckets
	d := limiter.Decision{Limit: limit}
	if len(w.idx) != k+1 {
		d.Remaining = limit
		return d
	}
	w.fill(&d, w.view(now, b, k), now, b, k, limit)
	return d
}

func (w *slidingWindow) refund(p *limiter.Policy, c limiter.Charge) {
	b, k := int64(p.BucketSize()), p.Buckets
	if len(w.idx) != k+1 {
		return
	}
	ix := c.At / b
	slot := int(ix % int64(k+1))
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
