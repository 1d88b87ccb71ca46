package gateway

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// maxKeysPerFlush bounds the per-key series a gateway keeps for a policy:
// the busiest keys by the store's busiest-key summaries (the ones a key
// listing reads first), refreshed at every flush. A flood of distinct keys
// cannot flood the store.
const maxKeysPerFlush = 100

// recorder counts admitted and rejected requests per minute, per policy and
// for each policy's busiest keys, and adds them to the store's history
// every few seconds. A request takes no lock and allocates nothing: it
// finds its policy and key in maps that are replaced, never changed, and
// adds to atomic counters.
type recorder struct {
	now      func() time.Time
	mu       sync.Mutex // serialises writers of policies
	policies atomic.Pointer[map[string]*policyRecord]
}

type policyRecord struct {
	total minutes
	// keys holds the tracked keys (store keys); replaced at each flush.
	keys atomic.Pointer[map[string]*minutes]
}

// minutes counts one series: four slots, by minute modulo four. The
// recorder drains them every 10 seconds, so a slot is always drained long
// before its minute comes round again.
type minutes [4]struct {
	minute   atomic.Int64
	admitted atomic.Int64
	rejected atomic.Int64
	_        [40]byte // one slot per cache line
}

func (m *minutes) add(minute, admitted, rejected int64) {
	c := &m[minute&3]
	if c.minute.Load() != minute {
		c.minute.Store(minute)
	}
	if admitted != 0 {
		c.admitted.Add(admitted)
	}
	if rejected != 0 {
		c.rejected.Add(rejected)
	}
}

// drain takes the counts gathered so far, oldest minute first.
func (m *minutes) drain() []limiter.Point {
	var out []limiter.Point
	for i := range m {
		c := &m[i]
		a, r := c.admitted.Swap(0), c.rejected.Swap(0)
		if a != 0 || r != 0 {
			out = append(out, limiter.Point{Minute: time.Unix(c.minute.Load()*60, 0).UTC(), Admitted: a, Rejected: r})
		}
	}
	slices.SortFunc(out, func(a, b limiter.Point) int { return a.Minute.Compare(b.Minute) })
	return out
}

func newRecorder(now func() time.Time) *recorder {
	r := &recorder{now: now}
	m := map[string]*policyRecord{}
	r.policies.Store(&m)
	return r
}

func policySeries(policy string) string   { return "policy:" + policy }
func keySeries(policy, key string) string { return "key:" + policy + ":" + limiter.StoreKey(key) }
func counterSeries(name string) string    { return "counter:" + name }

func (r *recorder) policy(name string) *policyRecord {
	if pr := (*r.policies.Load())[name]; pr != nil {
		return pr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.policies.Load()
	if pr := old[name]; pr != nil {
		return pr
	}
	pr := &policyRecord{}
	m := make(map[string]*policyRecord, len(old)+1)
	maps.Copy(m, old)
	m[name] = pr
	r.policies.Store(&m)
	return pr
}

// observe counts one request's decisions.
func (r *recorder) observe(e middleware.Event) {
	m := r.now().Unix() / 60
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
		pr := r.policy(policy)
		pr.total.add(m, admitted, rejected)
		// Keys over MaxKeyLen are stored as a hash of themselves, which
		// would cost a hash per request to find: they get no per-key series.
		if keys := pr.keys.Load(); keys != nil && len(e.Keys[i]) <= limiter.MaxKeyLen {
			if km := (*keys)[e.Keys[i]]; km != nil {
				km.add(m, admitted, rejected)
			}
		}
	}
}

// flush writes what was counted to the store's history: every policy's
// totals and its tracked keys' series; then it tracks the policy's
// busiest keys as busiest reports them (nil keeps the tracked keys).
func (r *recorder) flush(ctx context.Context, h limiter.History, busiest func(policy string) ([]string, bool)) error {
	var first error
	add := func(series string, points []limiter.Point) {
		if len(points) == 0 {
			return
		}
		if err := h.AddHistory(ctx, series, points); err != nil && first == nil {
			first = err
		}
	}
	for name, pr := range *r.policies.Load() {
		add(policySeries(name), pr.total.drain())
		old := pr.keys.Load()
		if keys, ok := busiest(name); ok {
			next := make(map[string]*minutes, len(keys))
			for _, k := range keys {
				if old != nil && (*old)[k] != nil {
					next[k] = (*old)[k]
				} else {
					next[k] = new(minutes)
				}
			}
			pr.keys.Store(&next)
		}
		if old != nil {
			for k, km := range *old {
				add(keySeries(name, k), km.drain())
			}
		}
	}
	return first
}

// FlushHistory writes the per-minute counts gathered so far to the store;
// the gateway does so every 10 seconds and at shutdown.
func (g *Gateway) FlushHistory(ctx context.Context) error {
	st := g.state.Load()
	h, ok := st.store.(limiter.History)
	if !ok {
		return nil
	}
	return g.history.flush(ctx, h, func(policy string) ([]string, bool) {
		p, ok := st.policies[policy]
		if !ok {
			return nil, true // gone after a reload: track none
		}
		keys, err := busiestKeys(ctx, st.store, p, maxKeysPerFlush)
		return keys, err == nil
	})
}

// busiestKeys returns the keys a listing of n keys of p reads first: the
// best of the store's busiest-key summaries, without reading each key's
// usage where the store can say (limiter.KeyRanker).
func busiestKeys(ctx context.Context, s limiter.Store, p *limiter.Policy, n int) ([]string, error) {
	if r, ok := s.(limiter.KeyRanker); ok {
		return r.RankKeys(ctx, p, n)
	}
	list, err := s.Keys(ctx, p, n)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(list.Keys))
	for i, u := range list.Keys {
		keys[i] = u.Key
	}
	return keys, nil
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
