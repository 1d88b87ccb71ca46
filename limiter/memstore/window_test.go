package memstore

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// scanWindow is a sliding_window key decided by the plain scan: every call
// sums all the buckets of the ring with algo.Window.ViewAt, as the memory
// store did before it kept the sums in the entry.
type scanWindow struct {
	win  algo.Window
	ring []algo.Bucket
}

func (s *scanWindow) allow(now, limit, cost int64) limiter.Decision {
	c := now / s.win.Size
	b := &s.ring[c%int64(len(s.ring))]
	v := s.win.ViewAt(s.ring, now, c)
	d := limiter.Decision{Limit: limit}
	if s.win.Fits(v, limit, cost) {
		if b.Index != c {
			*b = algo.Bucket{Index: c}
		}
		b.Count += cost
		v.Inside += cost
		v.Newest = c
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now}
	} else {
		d.RetryAfter = s.win.RetryAfter(s.ring, now, limit, cost)
	}
	s.win.Fill(&d, v, now, limit)
	return d
}

func (s *scanWindow) refund(c limiter.Charge) {
	ix := c.At / s.win.Size
	if b := &s.ring[ix%int64(len(s.ring))]; b.Index == ix {
		b.Count = max(0, b.Count-c.Cost)
	}
}

// TestWindowSumsMatchScan drives sliding_window entries with random costs,
// refunds and clock steps (within a bucket, to the next, over many buckets,
// backwards, and limits and costs near MaxInt64 that saturate the sums)
// and checks that every decision, and the ring after it, equals the plain
// scan's over the same buckets. The clock is a number: nothing sleeps.
func TestWindowSumsMatchScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []int64{1, 2, 3, 7, 10, 100, 1000, 1 << 40, 1 << 62, math.MaxInt64 / 2, math.MaxInt64 - 1, math.MaxInt64}
	var calls, admitted, rejected, refunds, rescans int
	for trial := range 3000 {
		k := []int{1, 2, 3, 5, limiter.DefaultBuckets, limiter.DefaultBuckets + 1, 17}[rng.IntN(7)]
		p := &limiter.Policy{Name: "p", Algorithm: limiter.SlidingWindow, Limit: 10, Window: time.Duration(k)*time.Millisecond + time.Duration(rng.IntN(1000*k)), Buckets: k}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		e := newWindowEntry(p).(*windowEntry)
		ref := &scanWindow{win: e.win(), ring: make([]algo.Bucket, k+1)}
		size := e.size
		limit := limits[rng.IntN(len(limits))]
		now := (1_000_000 + rng.Int64N(1000)) * size
		var charges []limiter.Charge
		for step := range 300 {
			switch r := rng.IntN(100); {
			case r < 40: // within the bucket, mostly
				now += rng.Int64N(size/4 + 1)
			case r < 55: // to a later bucket nearby
				now += rng.Int64N(2*size + 1)
			case r < 62: // over many buckets
				now += rng.Int64N(int64(3*k+5)*size + 1)
			case r < 65: // far ahead
				now += rng.Int64N(1000 * int64(k) * size)
			case r < 72: // backwards (another clock)
				now = max(0, now-rng.Int64N(int64(k+2)*size+1))
			}
			if r := rng.IntN(100); r < 20 && len(charges) > 0 {
				c := charges[rng.IntN(len(charges))]
				if rng.IntN(3) == 0 {
					c.Cost = 1 + rng.Int64N(c.Cost)
				}
				e.refund(now, p, "k", c)
				ref.refund(c)
				refunds++
			} else if r < 23 { // a refund of a charge never made
				c := limiter.Charge{Cost: 1 + rng.Int64N(3), At: max(0, now-rng.Int64N(int64(k+2)*size))}
				e.refund(now, p, "k", c)
				ref.refund(c)
				refunds++
			} else {
				var cost int64
				switch rng.IntN(4) {
				case 0:
					cost = 1
				case 1:
					cost = 1 + rng.Int64N(min(limit, 1<<62))
				case 2:
					cost = 1 + rng.Int64N(max(1, limit/int64(k+1)))
				default:
					cost = 1 + rng.Int64N(3)
				}
				stale := e.cur < 0 || now/size != e.cur
				got, want := e.allow(now, p, "k", limit, cost), ref.allow(now, limit, cost)
				if got != want {
					t.Fatalf("trial %d step %d: k=%d size=%d limit=%d now=%d cost=%d:\n got %+v\nwant %+v", trial, step, k, size, limit, now, cost, got, want)
				}
				calls++
				if stale {
					rescans++
				}
				if got.Allowed {
					admitted++
					charges = append(charges, got.Charge)
				} else {
					rejected++
				}
			}
			for i := range ref.ring {
				if e.ring()[i] != ref.ring[i] {
					t.Fatalf("trial %d step %d: slot %d is %+v, want %+v", trial, step, i, e.ring()[i], ref.ring[i])
				}
			}
		}
	}
	t.Logf("%d calls (%d admitted, %d rejected, %d from a scan), %d refunds", calls, admitted, rejected, rescans, refunds)
	if admitted == 0 || rejected == 0 || refunds == 0 || rescans == calls {
		t.Fatalf("the walk did not cover the cases: %d admitted, %d rejected, %d refunds, %d of %d calls from a scan", admitted, rejected, refunds, rescans, calls)
	}
}
