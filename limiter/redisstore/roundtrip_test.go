package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// tripCounter counts the round trips (commands sent alone and pipelines)
// that touch a key holding mark.
type tripCounter struct {
	mark  string
	trips atomic.Int64
}

func (h *tripCounter) touches(cmds ...redis.Cmder) bool {
	for _, c := range cmds {
		for _, a := range c.Args() {
			if s, ok := a.(string); ok && strings.Contains(s, h.mark) {
				return true
			}
		}
	}
	return false
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.touches(cmd) {
			h.trips.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.touches(cmds...) {
			h.trips.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestRoundTrips: every algorithm takes one round trip for an admitted
// request and at most two for a rejected one; Peek and Refund take one.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			m := miniredis.RunT(t)
			m.SetTime(limitertest.Start)
			clock := limitertest.NewClock(limitertest.Start)
			client := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, Protocol: 2})
			defer client.Close()
			h := &tripCounter{mark: "rt-" + string(alg)}
			client.AddHook(h)
			s, err := redisstore.New(client, redisstore.Options{Clock: clock.Now, Timeout: 5 * time.Second, NoLocalCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := limitertest.Policy(t, h.mark, alg, 2, time.Minute)
			ctx := context.Background()
			trips := func(what string, max int64, fn func() error) {
				t.Helper()
				before := h.trips.Load()
				if err := fn(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if n := h.trips.Load() - before; n < 1 || n > max {
					t.Fatalf("%s: %d round trips, want 1..%d", what, n, max)
				}
			}
			var charge limiter.Charge
			for i := range 2 {
				trips(fmt.Sprint("admitted request ", i+1), 1, func() error {
					d, err := s.Allow(ctx, p, "k", 1)
					if err == nil && !d.Allowed {
						err = fmt.Errorf("rejected")
					}
					charge = d.Charge
					return err
				})
			}
			trips("rejected request", 2, func() error {
				d, err := s.Allow(ctx, p, "k", 1)
				if err == nil && d.Allowed {
					err = fmt.Errorf("admitted")
				}
				return err
			})
			trips("peek", 1, func() error { _, err := s.Peek(ctx, p, "k"); return err })
			trips("refund", 1, func() error { return s.Refund(ctx, p, "k", charge) })
			// Reset also tells the other gateways (publishReset).
			trips("reset", 2, func() error { return s.Reset(ctx, p, "k") })
		})
	}
}
