package limitertest

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// Trace is a list of request times, in order.
type Trace []time.Duration

// BurstyTrace returns on/off Poisson traffic over total: periods of about
// one window alternate between rates drawn from 0.5x to 2x of limit per
// window and silence. It is deterministic for a seed.
func BurstyTrace(seed uint64, limit int64, window, total time.Duration) Trace {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var tr Trace
	var t time.Duration
	for t < total {
		on := time.Duration(float64(window) * (0.25 + r.Float64()))
		rate := float64(limit) * (0.5 + 1.5*r.Float64()) / float64(window) // per ns
		end := t + on
		for t < end {
			t += time.Duration(r.ExpFloat64() / rate)
			if t < end {
				tr = append(tr, t)
			}
		}
		t = end + time.Duration(float64(window)*0.5*r.Float64())
	}
	return tr
}

// AdversarialTrace sends limit requests just before a bucket boundary, then
// one request every step for two windows: the timing that fools estimates
// which assume requests are spread evenly over a bucket.
func AdversarialTrace(limit int64, window time.Duration, buckets int, step time.Duration) Trace {
	b := (window + time.Duration(buckets) - 1) / time.Duration(buckets)
	start := 3*b - time.Millisecond
	var tr Trace
	for range limit {
		tr = append(tr, start)
	}
	for t := start + step; t < start+2*window+2*b; t += step {
		tr = append(tr, t)
	}
	return tr
}

// Accuracy is what one trace did to one algorithm.
type Accuracy struct {
	Requests  int
	Admitted  int
	MaxInSpan int64   // most units admitted in any half-open span of one window
	MeanError float64 // mean |estimate - exact| / limit, sampled at every request
	Differing float64 // share of decisions that differ from the exact log's
}

// Measure replays tr through p on a fresh store built by newStore (whose
// clock the returned advance moves), comparing with an exact sliding log.
func Measure(p *limiter.Policy, tr Trace, newStore func(clock func() time.Time) limiter.Store) Accuracy {
	clock := NewClock(Start)
	s := newStore(clock.Now)
	defer s.Close()
	exactP := *p
	exactP.Algorithm = limiter.SlidingLog
	exactP.Name = p.Name + "-exact"
	if err := exactP.Validate(); err != nil { // a changed copy is a new policy
		panic(err)
	}
	exactClock := NewClock(Start)
	exact := newStore(exactClock.Now)
	defer exact.Close()

	ctx := context.Background()
	var acc Accuracy
	var admittedAt []time.Duration
	var errSum float64
	var differ int
	var last time.Duration
	for _, t := range tr {
		clock.Advance(t - last)
		exactClock.Advance(t - last)
		last = t
		// The estimate for the admitted set against the exact count of the
		// same admitted set, read before the request.
		u, _ := s.Peek(ctx, p, "k")
		truth := countIn(admittedAt, t-p.Window, t)
		errSum += math.Abs(float64(u.Count)-float64(truth)) / float64(p.Limit)
		d, _ := s.Allow(ctx, p, "k", 1)
		e, _ := exact.Allow(ctx, &exactP, "k", 1)
		if d.Allowed != e.Allowed {
			differ++
		}
		if d.Allowed {
			admittedAt = append(admittedAt, t)
		}
	}
	acc.Requests = len(tr)
	acc.Admitted = len(admittedAt)
	if len(tr) > 0 {
		acc.MeanError = errSum / float64(len(tr))
		acc.Differing = float64(differ) / float64(len(tr))
	}
	acc.MaxInSpan = maxInSpan(admittedAt, p.Window)
	return acc
}

// countIn counts times in (from, to].
func countIn(times []time.Duration, from, to time.Duration) int64 {
	lo := sort.Search(len(times), func(i int) bool { return times[i] > from })
	hi := sort.Search(len(times), func(i int) bool { return times[i] > to })
	return int64(hi - lo)
}

// maxInSpan returns the most times inside any span [t, t+window).
func maxInSpan(times []time.Duration, window time.Duration) int64 {
	var best int64
	j := 0
	for i := range times {
		for times[i]-times[j] >= window {
			j++
		}
		best = max(best, int64(i-j+1))
	}
	return best
}
