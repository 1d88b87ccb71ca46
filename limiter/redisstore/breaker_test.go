package redisstore

import (
	"testing"
	"time"
)

// TestBreakerZeroValue: a zero breaker is closed, opens after five
// failures, and lets one probe through after 250ms.
func TestBreakerZeroValue(t *testing.T) {
	t.Parallel()
	var b breaker
	now := time.Unix(1_000_000, 0)
	b.now = func() time.Time { return now }
	for i := range defaultBreakerThreshold {
		ok, probe := b.allow()
		if !ok || probe {
			t.Fatalf("call %d: allow = %v, %v; want true, false (closed)", i+1, ok, probe)
		}
		b.done(probe, true)
	}
	if ok, _ := b.allow(); ok {
		t.Fatal("open after 5 failures: a call went through")
	}
	now = now.Add(defaultBreakerInterval)
	ok, probe := b.allow()
	if !ok || !probe {
		t.Fatalf("after the interval: allow = %v, %v; want a probe", ok, probe)
	}
	b.done(probe, false)
	if b.open() {
		t.Fatal("a successful probe did not close the breaker")
	}
}

// TestBreakerZeroValueRealClock: without an injected clock the zero value
// reads time.Now (the old zero value panicked on its first failure).
func TestBreakerZeroValueRealClock(t *testing.T) {
	t.Parallel()
	var b breaker
	for range defaultBreakerThreshold {
		_, probe := b.allow()
		b.done(probe, true)
	}
	if !b.open() {
		t.Fatal("not open after 5 failures")
	}
}
