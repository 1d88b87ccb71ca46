package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// AlertEvent is the JSON body posted to an alert's webhook.
type AlertEvent struct {
	Alert     string    `json:"alert"`
	Policy    string    `json:"policy,omitempty"`
	Counter   string    `json:"counter,omitempty"`
	Key       string    `json:"key,omitempty"`
	Value     int64     `json:"value"`
	Threshold int64     `json:"threshold"`
	Time      time.Time `json:"time"`
}

// alerter checks thresholds and delivers events with retries and
// exponential backoff. Each alert has its own bounded queue and delivery
// goroutine, so a failing webhook delays only its own alert's events; a
// full queue drops events (counted as failed) rather than slowing requests
// down.
type alerter struct {
	now      func() time.Time
	client   *http.Client
	backoff  time.Duration
	attempts int
	metric   *prometheus.CounterVec
	log      func() *slog.Logger // failed deliveries; nil: not logged

	mu           sync.Mutex
	alerts       []AlertConfig
	policyAlerts atomic.Int32 // how many alerts watch a policy: requests skip the lock when none
	// watching is alerts, read by requests without the lock.
	watching atomic.Pointer[[]AlertConfig]
	last     map[string]time.Time // alert + "\x00" + key -> last firing
	queues   map[string]chan delivery
	closed   bool // under mu

	ctx     context.Context // ends deliveries on close
	cancel  context.CancelFunc
	workers sync.WaitGroup
}

// alertQueueSize bounds the events waiting per alert.
const alertQueueSize = 256

// drainTimeout is how long close lets queued events go out.
const drainTimeout = 2 * time.Second

type delivery struct {
	url   string
	event AlertEvent
}

func newAlerter(now func() time.Time, backoff time.Duration, metric *prometheus.CounterVec) *alerter {
	a := &alerter{now: now, client: &http.Client{Timeout: 5 * time.Second}, backoff: backoff, attempts: 4,
		metric: metric, last: map[string]time.Time{}, queues: map[string]chan delivery{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a
}

// configure replaces the alerts (on start and reload); cooldowns of alerts
// that keep their name carry over.
func (a *alerter) configure(alerts []AlertConfig) {
	n := 0
	for _, cfg := range alerts {
		if cfg.Policy != "" {
			n++
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alerts = alerts
	a.watching.Store(&alerts)
	a.policyAlerts.Store(int32(n))
	if a.closed {
		return
	}
	keep := map[string]bool{}
	for _, cfg := range alerts {
		keep[cfg.Name] = true
		if a.queues[cfg.Name] == nil {
			q := make(chan delivery, alertQueueSize)
			a.queues[cfg.Name] = q
			a.workers.Add(1)
			go a.run(q)
		}
	}
	for name, q := range a.queues {
		if !keep[name] {
			close(q) // its worker delivers what is queued, then ends
			delete(a.queues, name)
		}
	}
}

func threshold(share float64, value, of int64) int64 {
	if value > 0 {
		return value
	}
	return int64(math.Ceil(share * float64(of)))
}

// fire queues ev unless its alert fired for the same key within cooldown.
func (a *alerter) fire(cfg AlertConfig, ev AlertEvent) {
	if a.closed {
		return
	}
	k := cfg.Name + "\x00" + ev.Policy + ev.Counter + "\x00" + ev.Key
	if last, ok := a.last[k]; ok && ev.Time.Sub(last) < cfg.Cooldown {
		return
	}
	a.last[k] = ev.Time
	select {
	case a.queues[cfg.Name] <- delivery{cfg.Webhook, ev}:
	default:
		a.metric.WithLabelValues(cfg.Name, "failed").Inc()
		a.failed(ev, 0, "queue full")
	}
}

// failed logs an event that was not delivered after attempts tries. The
// webhook URL is left out: it often holds a secret.
func (a *alerter) failed(ev AlertEvent, attempts int, reason string) {
	if a.log == nil {
		return
	}
	a.log().Warn("alert delivery failed", "alert", ev.Alert, "policy", ev.Policy, "counter", ev.Counter,
		"value", ev.Value, "threshold", ev.Threshold, "attempts", attempts, "reason", reason)
}

// observe checks the policy alerts against one request's decisions. It
// reads the alerts without a lock; only a key over a threshold takes the
// lock, to check the alert's cooldown and queue the event.
func (a *alerter) observe(e middleware.Event) {
	if a.policyAlerts.Load() == 0 {
		return
	}
	watching := a.watching.Load()
	if watching == nil {
		return
	}
	for _, cfg := range *watching {
		for i, p := range e.Policies {
			if cfg.Policy != p || i >= len(e.Counts) {
				continue
			}
			if t := threshold(cfg.Share, cfg.Value, e.Limits[i]); e.Counts[i] >= t {
				ev := AlertEvent{Alert: cfg.Name, Policy: p, Key: e.Keys[i], Value: e.Counts[i], Threshold: t, Time: a.now().UTC()}
				a.mu.Lock()
				a.fire(cfg, ev)
				a.mu.Unlock()
			}
		}
	}
}

// counter checks the counter alerts against a counter's new value.
func (a *alerter) counter(c limiter.Counter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now().UTC()
	for _, cfg := range a.alerts {
		if cfg.Counter != c.Name {
			continue
		}
		if cfg.Value == 0 && c.Max == nil {
			continue // a share of no max
		}
		var limit int64
		if c.Max != nil {
			limit = *c.Max
		}
		if t := threshold(cfg.Share, cfg.Value, limit); c.Value >= t {
			a.fire(cfg, AlertEvent{Alert: cfg.Name, Counter: c.Name, Value: c.Value, Threshold: t, Time: now})
		}
	}
}

// run delivers one alert's events in order.
func (a *alerter) run(q chan delivery) {
	defer a.workers.Done()
	for d := range q {
		a.deliver(d)
	}
}

// deliver posts one event, retrying 5xx answers and network errors; close
// ends its waits.
func (a *alerter) deliver(d delivery) {
	body, _ := json.Marshal(d.event)
	wait := a.backoff
	var reason string
	giveUp := false
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			var resp *http.Response
			if resp, err = a.client.Do(req); err == nil {
				resp.Body.Close()
				reason = "answered " + resp.Status
				if resp.StatusCode < 300 {
					cancel()
					a.metric.WithLabelValues(d.event.Alert, "delivered").Inc()
					return
				}
				if resp.StatusCode < 500 {
					giveUp = true // a 4xx will not get better
				}
			}
		}
		cancel()
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // without the URL
			}
			reason = err.Error()
		}
		if giveUp || attempt >= a.attempts || a.ctx.Err() != nil {
			a.metric.WithLabelValues(d.event.Alert, "failed").Inc()
			a.failed(d.event, attempt, reason)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-a.ctx.Done():
			t.Stop()
			a.metric.WithLabelValues(d.event.Alert, "failed").Inc()
			a.failed(d.event, attempt, "shutting down: "+reason)
			return
		}
		wait *= 2
	}
}

// close stops taking events, lets the queued ones go out for up to
// drainTimeout, then cancels what is left and waits for the workers.
func (a *alerter) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		for name, q := range a.queues {
			close(q)
			delete(a.queues, name)
		}
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		a.cancel()
		<-done
	}
	a.cancel()
}
