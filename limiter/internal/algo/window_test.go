package algo

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// scanRetryAfter is RetryAfter as it was: for each window tried, a scan
// of all the buckets.
func (w Window) scanRetryAfter(buckets []Bucket, now, limit, cost int64) time.Duration {
	k := int64(w.Buckets)
	never := time.Duration((k+1)*w.Size) * w.Tick
	if cost > limit {
		return never
	}
	capN := w.Cap(limit)
	c := now / w.Size
	for j := int64(0); j <= k+1; j++ {
		cj := c + j
		start := max(now, cj*w.Size)
		var inside, oldest int64
		for _, b := range buckets {
			switch {
			case b.Count <= 0:
			case b.Index > cj-k:
				inside = satAdd(inside, b.Count)
			case b.Index == cj-k:
				oldest = satAdd(oldest, b.Count)
			}
		}
		if satAdd(satAdd(inside, oldest), cost) > capN {
			continue
		}
		room := float64(limit - cost - inside)
		if room < 0 {
			continue
		}
		t := start
		if oldest > 0 && room < float64(oldest) {
			t = max(start, (cj+1)*w.Size-int64(math.Floor(room/float64(oldest)*float64(w.Size))))
		}
		if t < (cj+1)*w.Size {
			return time.Duration(t-now) * w.Tick
		}
	}
	return never
}

// TestRetryAfterMatchesScan: RetryAfter, which reads each bucket once,
// equals the scan of all buckets for every window tried, over random
// buckets (duplicated indexes, buckets long gone, ahead of the clock, far
// ahead, empty, negative, near MaxInt64), limits, costs and bucket counts
// on both sides of the stack buffer.
func TestRetryAfterMatchesScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	counts := func(limit int64) int64 {
		switch rng.IntN(8) {
		case 0:
			return 0
		case 1:
			return -rng.Int64N(5)
		case 2:
			return math.MaxInt64 - rng.Int64N(3)
		case 3:
			return 1 << 62
		default:
			return 1 + rng.Int64N(max(1, limit/3+1))
		}
	}
	limits := []int64{1, 2, 5, 10, 100, 1000, 1 << 40, 1 << 62, math.MaxInt64 - 1, math.MaxInt64}
	var nonzero, never int
	for i := range 300_000 {
		k := []int{1, 2, 3, 10, 11, stackBuckets, stackBuckets + 1, 64}[rng.IntN(8)]
		w := Window{Size: 1 + rng.Int64N(1000), Buckets: k, Tick: time.Microsecond}
		now := 1_000_000*w.Size + rng.Int64N(1000*w.Size)
		c := now / w.Size
		limit := limits[rng.IntN(len(limits))]
		bs := make([]Bucket, rng.IntN(k+4))
		for j := range bs {
			var ix int64
			switch rng.IntN(10) {
			case 0:
				ix = c - int64(k) - 1 - rng.Int64N(5)
			case 1:
				ix = c + 2 + rng.Int64N(5)
			case 2:
				ix = []int64{math.MinInt64, math.MaxInt64, -1}[rng.IntN(3)]
			default:
				ix = c - int64(k) + rng.Int64N(int64(k)+2)
			}
			bs[j] = Bucket{Index: ix, Count: counts(limit)}
		}
		cost := 1 + rng.Int64N(max(1, min(limit, 1<<62)/int64(1+rng.IntN(20))))
		if rng.IntN(20) == 0 {
			cost = limit + 1 - rng.Int64N(2)
		}
		got, want := w.RetryAfter(bs, now, limit, cost), w.scanRetryAfter(bs, now, limit, cost)
		if got != want {
			t.Fatalf("case %d: %+v now=%d limit=%d cost=%d buckets=%v: got %v, want %v", i, w, now, limit, cost, bs, got, want)
		}
		switch {
		case got == time.Duration((int64(k)+1)*w.Size)*w.Tick:
			never++
		case got > 0:
			nonzero++
		}
	}
	t.Logf("%d waits, %d never", nonzero, never)
	if nonzero < 1000 || never < 1000 {
		t.Fatalf("the cases did not cover both outcomes: %d waits, %d never", nonzero, never)
	}
}

// BenchmarkRetryAfter: a full window of DefaultBuckets buckets.
func BenchmarkRetryAfter(b *testing.B) {
	w := Window{Size: 100, Buckets: 10, Tick: time.Millisecond}
	now := int64(100_050)
	bs := make([]Bucket, 11)
	for i := range bs {
		bs[i] = Bucket{Index: now/100 - 10 + int64(i), Count: 10}
	}
	b.ReportAllocs()
	for b.Loop() {
		w.RetryAfter(bs, now, 100, 1)
	}
}
