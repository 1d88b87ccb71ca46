package ginlimit_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves goroutines behind. The
// one-liners' memory stores stop when their limiter is collected, so it
// collects garbage first: three times, as Gin keeps its last contexts (and
// through them the handlers) in a sync.Pool, which survives two collections.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		for range 3 {
			runtime.GC()
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
