package redisstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves goroutines behind. go-redis's
// pool keeps redialling a dead node once a second in a goroutine that ends
// at its next attempt after the client is closed: tests that kill a node
// can leave one behind for up to a second.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
