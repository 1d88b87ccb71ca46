package gateway

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-gateway/sluice/internal/version"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// metrics are the gateway's Prometheus series; the names are fixed by the
// design. Each Gateway has its own registry.
type metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	limiterDuration prometheus.Histogram
	upstream        *prometheus.HistogramVec
	storeErrors     prometheus.Counter
	reloads         *prometheus.CounterVec
	alerts          *prometheus.CounterVec
	connsRefused    prometheus.Counter

	// byPolicy caches each policy's decision counters, so that a request
	// neither hashes label values nor takes the vector's lock; it is
	// replaced, never changed, when a policy is first seen.
	byPolicy   atomic.Pointer[map[string]*decisionCounters]
	byPolicyMu sync.Mutex
}

// decisionLabels are the decisions counted per policy, in the order of a
// decisionCounters.
var decisionLabels = [...]string{middleware.DecisionAllowed, middleware.DecisionRejected,
	middleware.DecisionShadowRejected, middleware.DecisionError}

type decisionCounters [len(decisionLabels)]prometheus.Counter

func (m *metrics) policyCounters(policy string) *decisionCounters {
	if m := m.byPolicy.Load(); m != nil {
		if c := (*m)[policy]; c != nil {
			return c
		}
	}
	m.byPolicyMu.Lock()
	defer m.byPolicyMu.Unlock()
	next := map[string]*decisionCounters{}
	if old := m.byPolicy.Load(); old != nil {
		if c := (*old)[policy]; c != nil {
			return c
		}
		maps.Copy(next, *old)
	}
	c := new(decisionCounters)
	for i, d := range decisionLabels {
		c[i] = m.decisions.WithLabelValues(policy, d)
	}
	next[policy] = c
	m.byPolicy.Store(&next)
	return c
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total",
			Help: "Requests on the proxy listener by route and status code.",
		}, []string{"route", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_decisions_total",
			Help: "Limiter decisions by policy: allowed, rejected, shadow_rejected or error.",
		}, []string{"policy", "decision"}),
		limiterDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_limiter_duration_seconds",
			Help:    "Time spent deciding one request, store calls included.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25},
		}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_upstream_duration_seconds",
			Help:    "Time from sending a request upstream to the end of its response, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_store_errors_total",
			Help: "Limiter store calls that failed.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_config_reloads_total",
			Help: "Config reloads by result: success or error.",
		}, []string{"result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_alert_deliveries_total",
			Help: "Alert webhook deliveries by alert and result: delivered or failed.",
		}, []string{"alert", "result"}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_connections_refused_total",
			Help: "Connections to the proxy listener refused (503) because server.max_connections were open.",
		}),
	}
	m.registry.MustRegister(m.requests, m.decisions, m.limiterDuration, m.upstream, m.storeErrors, m.reloads, m.alerts, m.connsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("error")
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "revision", "goversion"})
	v := version.Get()
	build.WithLabelValues(v.Version, v.Revision, v.GoVersion).Set(1)
	m.registry.MustRegister(build)
	return m
}

// breakerStore is a store with a circuit breaker that can say whether it
// is open.
type breakerStore interface {
	BreakerOpen() bool
}

// watchStore registers the gauges that describe the store in force:
// sluice_store_up pings it at each scrape (at most one second), and
// sluice_store_breaker_open reads its circuit breaker (0 for a store
// without one).
func (m *metrics) watchStore(store func() limiter.Store) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_store_up",
		Help: "1 when the limiter store answered a ping at scrape time, else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if store().Ping(ctx) != nil {
			return 0
		}
		return 1
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_store_breaker_open",
		Help: "1 while the store's circuit breaker is open (calls fail at once), else 0.",
	}, func() float64 {
		if b, ok := store().(breakerStore); ok && b.BreakerOpen() {
			return 1
		}
		return 0
	}))
}

// observe counts one request's decisions.
func (m *metrics) observe(e middleware.Event) {
	for i, p := range e.Policies {
		c := m.policyCounters(p)
		switch e.Decisions[i] {
		case middleware.DecisionAllowed:
			c[0].Inc()
		case middleware.DecisionRejected:
			c[1].Inc()
		case middleware.DecisionShadowRejected:
			c[2].Inc()
		case middleware.DecisionError:
			c[3].Inc()
		default:
			m.decisions.WithLabelValues(p, e.Decisions[i]).Inc()
		}
	}
	if e.Err != nil {
		m.storeErrors.Inc()
	}
	m.limiterDuration.Observe(e.Duration.Seconds())
}
