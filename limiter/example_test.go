package limiter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// A Policy is a limit per window and key; a Store applies it. Rejected
// requests cost nothing and say when to retry.
func Example() {
	store := memstore.New(memstore.Options{}) // or redisstore.New, shared by a fleet
	defer store.Close()
	login := &limiter.Policy{Name: "login", Algorithm: limiter.SlidingLog, Limit: 2, Window: time.Minute}
	if err := login.Validate(); err != nil {
		panic(err)
	}
	for range 3 {
		d, err := store.Allow(context.Background(), login, "alice", 1)
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter > 59*time.Second)
	}
	// Output:
	// true 1 false
	// true 0 false
	// false 0 true
}

// Validate names every field it refuses.
func ExamplePolicy_Validate() {
	p := &limiter.Policy{Name: "per ip", Limit: 0, Window: time.Minute}
	fmt.Println(p.Validate())
	// Output:
	// name: must match [A-Za-z0-9_-]+, got "per ip"
	// limit: must be > 0
}
