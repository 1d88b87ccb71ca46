// Package algo is the arithmetic of every algorithm, written once for all
// the stores: pure functions over a key's state with now passed in, in
// integer ticks of a length the store picks. One file per algorithm:
// window.go (sliding_window: Window), log.go (sliding_log: Log), fixed.go
// (fixed_window: Fixed) and gcra.go (gcra: Cell). The stores load and save
// the state. It is internal: users do not need it, and keeping it out of
// package limiter leaves the stores free to change.
package algo

import (
	"math"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// Bucket is one sub-window of a sliding_window key: its index (start time
// divided by the bucket size) and the units admitted in it.
type Bucket struct {
	Index, Count int64
}

// Window is the sliding_window arithmetic shared by every store: the
// estimate, the cap, the decision and the retry time, over buckets kept
// however the store likes. Times are integers in units of Tick.
type Window struct {
	Size    int64         // bucket size, in ticks
	Buckets int           // buckets per window
	Tick    time.Duration // the length of one tick
}

// WindowOf returns the Window of p for times counted in tick units.
func WindowOf(p *limiter.Policy, tick time.Duration) Window {
	return Window{Size: int64((p.BucketSize() + tick - 1) / tick), Buckets: p.Buckets, Tick: tick}
}

// WindowView is the state of a key at one instant.
type WindowView struct {
	Inside int64   // units in the buckets wholly inside the window
	Oldest int64   // units in the bucket partly inside
	Frac   float64 // the part of that bucket still inside, in (0, 1]
	Newest int64   // newest non-empty bucket index, or -1
}

// View sums buckets at time now (in ticks). Buckets older than the window
// are ignored; buckets ahead of now (another clock) count as inside.
func (w Window) View(buckets []Bucket, now int64) WindowView {
	return w.ViewAt(buckets, now, now/w.Size)
}

// ViewAt is View for a caller that knows now's bucket, c = now / Size.
func (w Window) ViewAt(buckets []Bucket, now, c int64) WindowView {
	k := int64(w.Buckets)
	v := WindowView{Frac: w.Frac(now, c), Newest: -1}
	for _, b := range buckets {
		switch {
		case b.Count <= 0:
			continue
		case b.Index > c-k:
			v.Inside = satAdd(v.Inside, b.Count)
		case b.Index == c-k:
			v.Oldest = satAdd(v.Oldest, b.Count)
		default:
			continue
		}
		v.Newest = max(v.Newest, b.Index)
	}
	return v
}

// Frac is the part of bucket c-Buckets, the oldest, still inside the
// window at now, for c = now / Size: a store that keeps the sums of a
// WindowView from one call to the next sets its Frac from it.
func (w Window) Frac(now, c int64) float64 { return float64((c+1)*w.Size-now) / float64(w.Size) }

// Estimate is the interpolated count.
func (v WindowView) Estimate() float64 { return float64(v.Inside) + float64(v.Oldest)*v.Frac }

// Cap is the most units that all buckets touching a window may hold.
func (w Window) Cap(limit int64) int64 {
	if c := limit + limit/int64(w.Buckets); c >= limit {
		return c
	}
	return math.MaxInt64 // limit + limit/buckets overflows
}

// Fits reports whether cost more units may be admitted.
func (w Window) Fits(v WindowView, limit, cost int64) bool {
	return w.FitsCap(v, limit, w.Cap(limit), cost)
}

// FitsCap is Fits for a caller that has computed capN = Cap(limit).
func (w Window) FitsCap(v WindowView, limit, capN, cost int64) bool {
	return v.Estimate()+float64(cost) <= float64(limit)+1e-9 && satAdd(satAdd(v.Inside, v.Oldest), cost) <= capN
}

// satAdd is a+b for counts that are not negative, MaxInt64 where the sum
// overflows (a store's hash can hold any count that fits an int64).
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Fill sets the count, remaining and reset time of d from v.
func (w Window) Fill(d *limiter.Decision, v WindowView, now, limit int64) {
	w.FillCap(d, v, now, limit, w.Cap(limit))
}

// FillCap is Fill for a caller that has computed capN = Cap(limit).
func (w Window) FillCap(d *limiter.Decision, v WindowView, now, limit, capN int64) {
	est := v.Estimate()
	d.Count = int64(math.Ceil(est - 1e-9))
	left := int64(math.MaxInt64) // float64 of a limit near MaxInt64 is 2^63, which int64 cannot hold
	if f := math.Floor(float64(limit) - est + 1e-9); f < math.MaxInt64 {
		left = int64(f)
	}
	d.Remaining = max(0, min(left, capN-v.Inside-v.Oldest))
	d.ResetAfter = 0
	if v.Newest >= 0 {
		d.ResetAfter = time.Duration((v.Newest+int64(w.Buckets)+1)*w.Size-now) * w.Tick
	}
}

// RetryAfter is the time until cost more units would fit if nothing else
// arrived: the oldest bucket's weight shrinks linearly, and whole buckets
// leave the window at bucket boundaries. It reads each bucket once: the
// sums of the k+2 windows it tries come from the counts of the buckets
// c-k..c+1 (the oldest of each) and of those ahead of them.
func (w Window) RetryAfter(buckets []Bucket, now, limit, cost int64) time.Duration {
	k := int64(w.Buckets)
	never := time.Duration((k+1)*w.Size) * w.Tick
	if cost > limit {
		return never
	}
	capN := w.Cap(limit)
	c := now / w.Size
	// at[j] is the count of bucket c+j-k, the oldest of window j; ahead is
	// the count of the buckets after c+1, inside every window tried.
	var buf [2 * (stackBuckets + 2)]int64
	var at, ins []int64
	if k <= stackBuckets {
		at, ins = buf[:k+2], buf[k+2:2*(k+2)]
	} else {
		at, ins = make([]int64, k+2), make([]int64, k+2)
	}
	var ahead int64
	for _, b := range buckets {
		switch {
		case b.Count <= 0 || b.Index < c-k:
		case b.Index > c+1:
			ahead = satAdd(ahead, b.Count)
		default:
			at[b.Index-(c-k)] = satAdd(at[b.Index-(c-k)], b.Count)
		}
	}
	// ins[j] = ahead + at[j+1] + ... + at[k+1], the buckets wholly inside
	// window j; each sum saturates, as a sum of the buckets one by one does.
	ins[k+1] = ahead
	for j := k; j >= 0; j-- {
		ins[j] = satAdd(ins[j+1], at[j+1])
	}
	for j := int64(0); j <= k+1; j++ {
		cj := c + j
		start := max(now, cj*w.Size)
		inside, oldest := ins[j], at[j]
		if satAdd(satAdd(inside, oldest), cost) > capN {
			continue
		}
		room := float64(limit - cost - inside)
		if room < 0 {
			continue
		}
		t := start
		if oldest > 0 && room < float64(oldest) {
			// weight(t) = ((cj+1)*size - t) / size must fall to room/oldest.
			t = max(start, (cj+1)*w.Size-int64(math.Floor(room/float64(oldest)*float64(w.Size))))
		}
		if t < (cj+1)*w.Size {
			return time.Duration(t-now) * w.Tick
		}
	}
	return never
}

// stackBuckets is the most buckets per window whose RetryAfter keeps its
// sums on the stack.
const stackBuckets = 16
