package gateway

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// maxKeysPerFlush bounds the per-key series one flush writes for a policy:
// only its busiest keys get a history, so a flood of distinct keys cannot
// flood the store.
const maxKeysPerFlush = 100

// maxKeysTracked bounds the keys counted per policy between two flushes.
const maxKeysTracked = 10_000

// recorder counts admitted and rejected requests per minute, per policy and
// per key, and adds them to the store's history every few seconds.
type recorder struct {
	mu      sync.Mutex
	now     func() time.Time
	pending map[seriesMinute]*limiter.Point
	perKey  map[string]int // distinct keys this interval, per policy
}

type seriesMinute struct {
	series string
	minute int64
}

func newRecorder(now func() time.Time) *recorder {
	return &recorder{now: now, pending: map[seriesMinute]*limiter.Point{}, perKey: map[string]int{}}
}

func policySeries(policy string) string   { return "policy:" + policy }
func keySeries(policy, key string) string { return "key:" + policy + ":" + limiter.StoreKey(key) }
func counterSeries(name string) string    { return "counter:" + name }
func (r *recorder) add(series string, m int64) *limiter.Point {
	k := seriesMinute{series, m}
	p := r.pending[k]
	if p == nil {
		p = &limiter.Point{Minute: time.Unix(m*60, 0).UTC()}
		r.pending[k] = p
	}
	return p
}

// observe counts one request's decisions.
func (r *recorder) observe(e middleware.Event) {
	m := r.now().Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, policy := range e.Policies {
		var admitted, rejected int64
		switch e.Decisions[i] {
		case middleware.DecisionAllowed:
			admitted = max(1, e.Costs[i])
		case middleware.DecisionRejected, middleware.DecisionShadowRejected:
			rejected = 1
		default:
			continue
		}
		p := r.add(policySeries(policy), m)
		p.Admitted += admitted
		p.Rejected += rejected
		ks := keySeries(policy, e.Keys[i])
		if _, seen := r.pending[seriesMinute{ks, m}]; !seen {
			if r.perKey[policy] >= maxKeysTracked {
				continue
			}
			r.perKey[policy]++
		}
		p = r.add(ks, m)
		p.Admitted += admitted
		p.Rejected += rejected
	}
}

// flush writes what was counted to the store's history.
func (r *recorder) flush(ctx context.Context, h limiter.History) error {
	r.mu.Lock()
	pending := r.pending
	r.pending, r.perKey = map[seriesMinute]*limiter.Point{}, map[string]int{}
	r.mu.Unlock()
	bySeries := map[string][]limiter.Point{}
	keyTotals := map[string]map[string]int64{} // policy -> key series -> requests
	for k, p := range pending {
		bySeries[k.series] = append(bySeries[k.series], *p)
		if rest, ok := strings.CutPrefix(k.series, "key:"); ok {
			policy, _, _ := strings.Cut(rest, ":")
			if keyTotals[policy] == nil {
				keyTotals[policy] = map[string]int64{}
			}
			keyTotals[policy][k.series] += p.Admitted + p.Rejected
		}
	}
	for _, totals := range keyTotals {
		if len(totals) <= maxKeysPerFlush {
			continue
		}
		names := make([]string, 0, len(totals))
		for name := range totals {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool { return totals[names[i]] > totals[names[j]] })
		for _, name := range names[maxKeysPerFlush:] {
			delete(bySeries, name)
		}
	}
	var first error
	for series, points := range bySeries {
		if err := h.AddHistory(ctx, series, points); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// FlushHistory writes the per-minute counts gathered so far to the store;
// the gateway does so every 10 seconds and at shutdown.
func (g *Gateway) FlushHistory(ctx context.Context) error {
	h, ok := g.state.Load().store.(limiter.History)
	if !ok {
		return nil
	}
	return g.history.flush(ctx, h)
}

func (g *Gateway) historyLoop() {
	defer close(g.historyDone)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.historyStop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = g.FlushHistory(ctx)
			cancel()
		}
	}
}

// recordCounter adds a counter's value to its history and checks its
// alerts.
func (g *Gateway) recordCounter(ctx context.Context, c limiter.Counter) {
	g.alerts.counter(c)
	if h, ok := g.state.Load().store.(limiter.History); ok {
		v := c.Value
		_ = h.AddHistory(ctx, counterSeries(c.Name), []limiter.Point{{Minute: g.history.now().UTC(), Value: &v}})
	}
}

// observe counts a decision in the metrics and the history.
func (g *Gateway) observe(e middleware.Event) {
	g.metrics.observe(e)
	g.history.observe(e)
	g.alerts.observe(e)
}
