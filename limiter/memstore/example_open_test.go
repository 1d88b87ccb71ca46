package memstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// ExampleOpen keeps named counters in a file: an increment sent twice with
// one idempotency key counts once, and the count outlives the store.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "sluice-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sluice.db")
	ctx := context.Background()

	s, err := memstore.Open(memstore.Options{Path: path})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := s.Counters().(limiter.CounterWriter)
	inc := limiter.CounterOp{Kind: limiter.OpAdd, Name: "jobs", Delta: 1}
	for range 2 { // a client retrying after a lost answer
		res, _ := w.Write(ctx, inc, "job-7f3a")
		fmt.Println(res.Counter.Value, res.Replayed)
	}
	s.Close()

	s, _ = memstore.Open(memstore.Options{Path: path})
	defer s.Close()
	c, _ := s.Counters().Get(ctx, "jobs")
	fmt.Println("after reopening:", c.Value)
	// Output:
	// 1 false
	// 1 true
	// after reopening: 1
}
