package limitertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// writer returns the store's CounterWriter, failing the test without one.
func writer(t *testing.T, h *Harness) limiter.CounterWriter {
	t.Helper()
	w, ok := h.Store.Counters().(limiter.CounterWriter)
	if !ok {
		t.Fatalf("%T does not implement limiter.CounterWriter", h.Store.Counters())
	}
	return w
}

// MustWrite calls Write and fails the test on error.
func MustWrite(t testing.TB, w limiter.CounterWriter, op limiter.CounterOp, key string) limiter.CounterResult {
	t.Helper()
	res, err := w.Write(context.Background(), op, key)
	if err != nil {
		t.Fatalf("Write(%+v, %q): %v", op, key, err)
	}
	return res
}

func add(name string, delta int64) limiter.CounterOp {
	return limiter.CounterOp{Kind: limiter.OpAdd, Name: name, Delta: delta}
}

func set(c limiter.Counter) limiter.CounterOp {
	return limiter.CounterOp{Kind: limiter.OpSet, Name: c.Name, Counter: c}
}

func value(t *testing.T, h *Harness, name string) int64 {
	t.Helper()
	c, err := h.Store.Counters().Get(context.Background(), name)
	if errors.Is(err, limiter.ErrNotFound) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.Value
}

func testIdempotency(t *testing.T, h *Harness) {
	w := writer(t, h)
	ctx := context.Background()

	// A repeat returns the first answer and changes nothing.
	if res := MustWrite(t, w, add("jobs", 5), "k1"); res.Counter.Value != 5 || res.Replayed {
		t.Fatalf("first write: %+v, want value 5, not replayed", res)
	}
	if res := MustWrite(t, w, add("jobs", 5), "k1"); res.Counter.Value != 5 || !res.Replayed {
		t.Fatalf("repeat: %+v, want the first answer (5), replayed", res)
	}
	if v := value(t, h, "jobs"); v != 5 {
		t.Fatalf("after a repeat: value %d, want 5", v)
	}
	// The same key with another request is refused and changes nothing.
	for _, op := range []limiter.CounterOp{add("jobs", 3), add("jobs", -5), set(limiter.Counter{Name: "jobs", Value: 5}), {Kind: limiter.OpDelete, Name: "jobs"}} {
		if _, err := w.Write(ctx, op, "k1"); !errors.Is(err, limiter.ErrIdempotencyKeyReused) {
			t.Fatalf("key k1 reused for %+v: err %v, want ErrIdempotencyKeyReused", op, err)
		}
	}
	if v := value(t, h, "jobs"); v != 5 {
		t.Fatalf("after refused reuses: value %d, want 5", v)
	}
	// Keys are scoped to their counter.
	if res := MustWrite(t, w, add("other", 1), "k1"); res.Replayed || res.Counter.Value != 1 {
		t.Fatalf("k1 on another counter: %+v, want a new write", res)
	}
	// Writes without a key always apply.
	MustWrite(t, w, add("jobs", 1), "")
	MustWrite(t, w, add("jobs", 1), "")
	if v := value(t, h, "jobs"); v != 7 {
		t.Fatalf("two unkeyed increments: value %d, want 7", v)
	}

	// A refused step is an answer too: it is replayed even once the step
	// would fit.
	MustWrite(t, w, set(limiter.Counter{Name: "seats", Value: 1, Max: ptr(1)}), "")
	if res := MustWrite(t, w, add("seats", 1), "k2"); res.Bound != "max" || res.Counter.Value != 1 {
		t.Fatalf("step past max: %+v, want bound max at 1", res)
	}
	MustWrite(t, w, set(limiter.Counter{Name: "seats", Value: 1, Max: ptr(10)}), "")
	res := MustWrite(t, w, add("seats", 1), "k2")
	if res.Bound != "max" || res.Counter.Value != 1 || !res.Replayed {
		t.Fatalf("repeat of a refused step: %+v, want the recorded refusal", res)
	}
	if be, ok := limiter.IsBoundError(res.Err()); !ok || be.Value != 1 || be.Bound != "max" {
		t.Fatalf("Err of a refusal: %v", res.Err())
	}
	if v := value(t, h, "seats"); v != 1 {
		t.Fatalf("after a replayed refusal: value %d, want 1", v)
	}

	// Set and Delete replay their first answer, whatever happened since.
	want := limiter.Counter{Name: "set", Value: -3, Min: ptr(-10), Max: ptr(1 << 60)}
	if res := MustWrite(t, w, set(want), "k3"); res.Counter.Value != -3 || *res.Counter.Max != 1<<60 {
		t.Fatalf("set: %+v", res)
	}
	MustWrite(t, w, add("set", 4), "")
	res = MustWrite(t, w, set(want), "k3")
	if !res.Replayed || res.Counter.Value != -3 || res.Counter.Min == nil || *res.Counter.Min != -10 {
		t.Fatalf("repeated set: %+v, want the first answer (-3 in [-10, 2^60])", res)
	}
	if v := value(t, h, "set"); v != 1 {
		t.Fatalf("a repeated set changed the value: %d, want 1", v)
	}
	del := limiter.CounterOp{Kind: limiter.OpDelete, Name: "set"}
	if res := MustWrite(t, w, del, "k4"); res.Replayed {
		t.Fatalf("first delete: %+v", res)
	}
	MustWrite(t, w, add("set", 2), "")
	if res := MustWrite(t, w, del, "k4"); !res.Replayed {
		t.Fatalf("repeated delete: %+v, want replayed", res)
	}
	if v := value(t, h, "set"); v != 2 {
		t.Fatalf("a repeated delete deleted again: value %d, want 2", v)
	}

	if _, err := w.Write(ctx, add("jobs", 1), string(make([]byte, 300))); err == nil {
		t.Fatal("a 300-byte key with NULs was accepted")
	}
	if !h.RecordsFollowAdvance {
		return
	}
	// Records last IdempotencyTTL: the same key is new a day later.
	h.Advance(limiter.IdempotencyTTL - time.Minute)
	if res := MustWrite(t, w, add("jobs", 5), "k1"); !res.Replayed {
		t.Fatalf("repeat a minute before the TTL: %+v, want replayed", res)
	}
	h.Advance(2 * time.Minute)
	if res := MustWrite(t, w, add("jobs", 5), "k1"); res.Replayed || res.Counter.Value != 12 {
		t.Fatalf("repeat after the TTL: %+v, want a new write to 12", res)
	}
}

// testIdempotencyConcurrent: 50 writers send the same 20 keyed increments
// at once; each key counts once.
func testIdempotencyConcurrent(t *testing.T, h *Harness) {
	w := writer(t, h)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 50 {
		wg.Go(func() {
			for k := range 20 {
				res, err := w.Write(context.Background(), add("once", 1), fmt.Sprintf("key-%d", k))
				if err != nil {
					t.Error(err)
					return
				}
				if !res.Replayed {
					mu.Lock()
					fresh++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if v := value(t, h, "once"); v != 20 || fresh != 20 {
		t.Fatalf("50 writers x 20 keys: value %d, %d first answers; want 20 and 20", v, fresh)
	}
}
