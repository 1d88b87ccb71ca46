package limiter_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// TestWindowAboveMaxIsRefused: a window so long that a deadline (now plus
// a window or two, in nanoseconds since 1970) overflows int64 is refused
// by Validate. Such a window (2562047h passed `sluice validate`) made the
// memory store admit every request and the Redis store's sliding_window too.
func TestWindowAboveMaxIsRefused(t *testing.T) {
	t.Parallel()
	for _, w := range []time.Duration{limiter.MaxWindow + time.Millisecond, 2562047 * time.Hour} {
		p := &limiter.Policy{Name: "p", Limit: 3, Window: w}
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), "window") {
			t.Errorf("window %v: Validate() = %v, want an error naming window", w, err)
		}
	}
}

// TestMaxWindowStillLimits: at the longest window Validate accepts, every
// algorithm of the memory store still holds its limit.
func TestMaxWindowStillLimits(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA} {
		p := &limiter.Policy{Name: "p", Algorithm: alg, Limit: 3, Window: limiter.MaxWindow}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		s := memStore(func() time.Time { return now })
		admitted := 0
		for range 5 {
			d, err := s.Allow(context.Background(), p, "k", 1)
			if err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			if d.Allowed {
				admitted++
			}
		}
		if admitted != 3 {
			t.Errorf("%s with window %v: %d of 5 admitted, want 3", alg, limiter.MaxWindow, admitted)
		}
	}
}

// TestLargestLimitAdmits: a limit of MaxInt64 (which validate accepts)
// admits requests on every algorithm whose rules allow it. sliding_window's
// cap (limit + limit/buckets) overflowed and rejected every request.
func TestLargestLimitAdmits(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, alg := range []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow} {
		p := &limiter.Policy{Name: "p", Algorithm: alg, Limit: math.MaxInt64, Window: time.Minute}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		s := memStore(func() time.Time { return now })
		for i := range 3 {
			d, err := s.Allow(context.Background(), p, "k", 1)
			if err != nil || !d.Allowed {
				t.Fatalf("%s: request %d: allowed %v, err %v; want admitted", alg, i+1, d.Allowed, err)
			}
			if d.Remaining < math.MaxInt64-int64(i)-2 {
				t.Fatalf("%s: request %d: remaining %d, want about MaxInt64", alg, i+1, d.Remaining)
			}
		}
	}
}
