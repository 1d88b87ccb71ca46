package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// An in-process store on a clock the caller moves: a fixed window of 2
// requests a minute refills when the next minute starts.
func ExampleNew() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Options{Clock: func() time.Time { return now }})
	defer store.Close()
	p := &limiter.Policy{Name: "per-ip", Algorithm: limiter.FixedWindow, Limit: 2, Window: time.Minute}
	_ = p.Validate()

	for _, step := range []time.Duration{0, 10 * time.Second, 10 * time.Second, 40 * time.Second} {
		now = now.Add(step)
		d, _ := store.Allow(context.Background(), p, "203.0.113.7", 1)
		fmt.Println(now.Format("15:04:05"), d.Allowed, d.Remaining, d.RetryAfter)
	}
	// Output:
	// 12:00:00 true 1 0s
	// 12:00:10 true 0 0s
	// 12:00:20 false 0 40s
	// 12:01:00 true 1 0s
}
