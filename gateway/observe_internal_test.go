package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

func bookkeeper() *Gateway {
	g := &Gateway{metrics: newMetrics(), history: newRecorder(time.Now)}
	g.alerts = newAlerter(time.Now, time.Millisecond, g.metrics.alerts)
	g.alerts.configure([]AlertConfig{{Name: "hot", Policy: "p", Share: 0.9, Webhook: "http://127.0.0.1:1/", Cooldown: time.Minute}})
	return g
}

// historyStore records AddHistory calls.
type historyStore struct {
	mu     sync.Mutex
	series map[string][]limiter.Point
}

func (h *historyStore) AddHistory(_ context.Context, series string, points []limiter.Point) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.series[series] = append(h.series[series], points...)
	return nil
}

func (h *historyStore) History(context.Context, string, time.Time) ([]limiter.Point, error) {
	return nil, nil
}

func event(key, decision string) middleware.Event {
	return middleware.Event{Policies: []string{"p"}, Decisions: []string{decision}, Keys: []string{key},
		Costs: []int64{1}, Counts: []int64{1}, Limits: []int64{100}}
}

// TestRecorderFollowsBusiestKeys: totals are exact under concurrent
// requests; per-key series exist for the keys the store ranks busiest,
// from the flush that first names them on.
func TestRecorderFollowsBusiestKeys(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 30, 0, time.UTC)
	r := newRecorder(func() time.Time { return now })
	h := &historyStore{series: map[string][]limiter.Point{}}
	busiest := func(string) ([]string, bool) { return []string{"hot", "warm"}, true }
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.observe(event(fmt.Sprintf("k%d-%d", w, i), middleware.DecisionAllowed))
				r.observe(event("hot", middleware.DecisionRejected))
			}
		})
	}
	wg.Wait()
	if err := r.flush(context.Background(), h, busiest); err != nil {
		t.Fatal(err)
	}
	tot := h.series[policySeries("p")]
	if len(tot) != 1 || tot[0].Admitted != 8000 || tot[0].Rejected != 8000 || !tot[0].Minute.Equal(now.Truncate(time.Minute)) {
		t.Fatalf("policy series %+v, want one minute with 8000 admitted and 8000 rejected", tot)
	}
	if len(h.series) != 1 {
		t.Fatalf("series before any key was ranked: %v", h.series)
	}
	for range 5 {
		r.observe(event("hot", middleware.DecisionAllowed))
		r.observe(event("cold", middleware.DecisionAllowed))
	}
	now = now.Add(time.Minute)
	r.observe(event("warm", middleware.DecisionRejected))
	if err := r.flush(context.Background(), h, busiest); err != nil {
		t.Fatal(err)
	}
	if got := h.series[keySeries("p", "hot")]; len(got) != 1 || got[0].Admitted != 5 {
		t.Fatalf("hot: %+v, want 5 admitted", got)
	}
	if got := h.series[keySeries("p", "warm")]; len(got) != 1 || got[0].Rejected != 1 || !got[0].Minute.Equal(now.Truncate(time.Minute)) {
		t.Fatalf("warm: %+v, want 1 rejected in the second minute", got)
	}
	if got := h.series[keySeries("p", "cold")]; got != nil {
		t.Fatalf("cold is not among the busiest but has a series: %+v", got)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkObserve is the gateway's per-request bookkeeping after a
// decision: metrics, history (100 tracked keys) and one policy alert, over
// 100,000 keys. It takes no process-wide lock; cpu-ns/op is CPU time.
//
//	go test ./gateway -run '^$' -bench Observe -benchtime 1000000x
func BenchmarkObserve(b *testing.B) {
	g := bookkeeper()
	defer g.alerts.close()
	tracked := make([]string, 100)
	for i := range tracked {
		tracked[i] = fmt.Sprintf("key-%d", i)
	}
	_ = g.history.flush(context.Background(), &historyStore{series: map[string][]limiter.Point{}},
		func(string) ([]string, bool) { return tracked, true })
	events := make([]middleware.Event, 100_000)
	for i := range events {
		d := middleware.DecisionAllowed
		if i%10 == 0 {
			d = middleware.DecisionRejected
		}
		events[i] = event(fmt.Sprintf("key-%d", i), d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(events))
		for pb.Next() {
			g.observe(events[i%len(events)])
			i++
		}
	})
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}
