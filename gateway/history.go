package gateway

import (
	"context"
	"sort"
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
// per key, and adds them to the store's history every few seconds. Counting
// touches only maps keyed by the strings the request already has; series
// names are built at flush time.
type recorder struct {
	mu      sync.Mutex
	now     func() time.Time
	pending map[recordKey]*limiter.Point
	perKey  map[string]int // distinct keys this interval, per policy
}

// recordKey is one minute of a policy's total (total set) or of one key.
type recordKey struct {
	policy, key string
	total       bool
	minute      int64
}

func newRecorder(now func() time.Time) *recorder {
	return &recorder{now: now, pending: map[recordKey]*limiter.Point{}, perKey: map[string]int{}}
}

func policySeries(policy string) string   { return "policy:" + policy }
func keySeries(policy, key string) string { return "key:" + policy + ":" + limiter.StoreKey(key) }
func counterSeries(name string) string    { return "counter:" + name }

func (r *recorder) add(k recordKey, admitted, rejected int64) {
	p := r.pending[k]
	if p == nil {
		p = &limiter.Point{Minute: time.Unix(k.minute*60, 0).UTC()}
		r.pending[k] = p
	}
	p.Admitted += admitted
	p.Rejected += rejected
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
		r.add(recordKey{policy: policy, total: true, minute: m}, admitted, rejected)
		k := recordKey{policy: policy, key: e.Keys[i], minute: m}
		if _, seen := r.pending[k]; !seen {
			if r.perKey[policy] >= maxKeysTracked {
				continue
			}
			r.perKey[policy]++
		}
		r.add(k, admitted, rejected)
	}
}

// flush writes what was counted to the store's history: every policy's
// totals, and the series of each policy's busiest keys.
func (r *recorder) flush(ctx context.Context, h limiter.History) error {
	r.mu.Lock()
	pending := r.pending
	r.pending, r.perKey = map[recordKey]*limiter.Point{}, map[string]int{}
	r.mu.Unlock()
	type keyOf struct{ policy, key string }
	keyTotals := map[string]map[keyOf]int64{} // policy -> key -> requests
	for k, p := range pending {
		if k.total {
			continue
		}
		if keyTotals[k.policy] == nil {
			keyTotals[k.policy] = map[keyOf]int64{}
		}
		keyTotals[k.policy][keyOf{k.policy, k.key}] += p.Admitted + p.Rejected
	}
	dropped := map[keyOf]bool{}
	for _, totals := range keyTotals {
		if len(totals) <= maxKeysPerFlush {
			continue
		}
		keys := make([]keyOf, 0, len(totals))
		for k := range totals {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return totals[keys[i]] > totals[keys[j]] })
		for _, k := range keys[maxKeysPerFlush:] {
			dropped[k] = true
		}
	}
	bySeries := map[string][]limiter.Point{}
	for k, p := range pending {
		series := policySeries(k.policy)
		if !k.total {
			if dropped[keyOf{k.policy, k.key}] {
				continue
			}
			series = keySeries(k.policy, k.key)
		}
		bySeries[series] = append(bySeries[series], *p)
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
