package redisstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// A store on Redis, shared by every gateway that points at it; time comes
// from the Redis server. (Compiled, not run: it needs a Redis.)
func ExampleNew() {
	store, err := redisstore.New(nil, redisstore.Options{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	p := &limiter.Policy{Name: "per-key", Limit: 100, Window: time.Minute}
	_ = p.Validate()
	d, err := store.Allow(context.Background(), p, "api-key-123", 1)
	if err != nil {
		fmt.Println("redis unavailable:", err) // fail open or closed: the caller's choice
		return
	}
	fmt.Println(d.Allowed, d.Remaining)
}
