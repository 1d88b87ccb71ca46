package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

// TestAlerts: a policy alert fires when a key reaches its limit, is retried
// after a 500, respects its cooldown on the injected clock, and a counter
// alert fires when the counter reaches its value; deliveries are counted.
func TestAlerts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []gateway.AlertEvent
	calls := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusInternalServerError) // the first delivery must be retried
			return
		}
		var ev gateway.AlertEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Error(err)
		}
		events = append(events, ev)
	}))
	defer hook.Close()
	cfg := proxyConfig("http://127.0.0.1:1", "{ backend: memory }") + fmt.Sprintf(`
alerts:
  - { name: full, policy: by-key, share: 1.0, webhook: %q, cooldown: 1h }
  - { name: busy, counter: jobs, value: 10, webhook: %q }
`, hook.URL, hook.URL)
	clock := limitertest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), Clock: clock.Now, AlertBackoff: 10 * time.Millisecond})

	received := func(n int) []gateway.AlertEvent {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got := append([]gateway.AlertEvent(nil), events...)
			mu.Unlock()
			if len(got) >= n || time.Now().After(deadline) {
				return got
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	h.get("/keyed", "X-API-Key", "alice") // count 1 of 2: no alert
	h.get("/keyed", "X-API-Key", "alice") // count 2: the alert fires
	h.get("/keyed", "X-API-Key", "alice") // still full: inside the cooldown
	got := received(1)
	if len(got) != 1 || got[0].Alert != "full" || got[0].Policy != "by-key" || got[0].Key != "header:x-api-key:alice" || got[0].Value != 2 || got[0].Threshold != 2 {
		t.Fatalf("events %+v, want one for alice at 2 of 2", got)
	}
	clock.Advance(2 * time.Hour)
	h.get("/keyed", "X-API-Key", "alice") // past the cooldown: fires again
	if got = received(2); len(got) != 2 {
		t.Fatalf("after the cooldown: %d events, want 2", len(got))
	}
	h.adminDo("PUT", "/v1/counters/jobs", `{"value":5}`)
	h.adminDo("POST", "/v1/counters/jobs/increment", `{"by":5}`)
	if got = received(3); len(got) != 3 || got[2].Alert != "busy" || got[2].Counter != "jobs" || got[2].Value != 10 {
		t.Fatalf("counter alert: %+v", got)
	}
	mu.Lock()
	if calls != 4 {
		t.Errorf("webhook calls %d, want 4 (one retried 500, three deliveries)", calls)
	}
	mu.Unlock()
	if got := metric(t, h, `sluice_alert_deliveries_total{alert="full",result="delivered"}`); got != "2" {
		t.Fatalf("delivered metric %q, want 2", got)
	}
	if !strings.HasPrefix(got[0].Time.Format(time.RFC3339), "2030-01-01T12") {
		t.Fatalf("event time %v, want the injected clock's", got[0].Time)
	}
}

func TestAlertConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := gateway.Load(writeConfig(t, `
policies: { p: { limit: 1, window: 1s } }
alerts:
  - { name: a, policy: p, counter: c, share: 0.5, value: 3, webhook: "ftp://x", cooldown: -1s }
  - { name: a, policy: nope, value: 1, webhook: "http://x" }
`), []string{}, nil)
	for _, want := range []string{"alerts[0]: needs exactly one of policy and counter", "alerts[0]: needs exactly one of share and value",
		"alerts[0].webhook", "alerts[0].cooldown", "alerts[1].name: duplicate", "alerts[1].policy: unknown policy"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// TestAlertQueuesAreIndependent: a webhook that hangs holds up only its own
// alert; another alert's event arrives while the first is still stuck.
func TestAlertQueuesAreIndependent(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stuckCalled := make(chan struct{}, 10)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stuckCalled <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer stuck.Close()
	fine := make(chan gateway.AlertEvent, 10)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev gateway.AlertEvent
		_ = json.NewDecoder(r.Body).Decode(&ev)
		fine <- ev
	}))
	defer ok.Close()
	defer close(release) // before the servers close
	cfg := proxyConfig("http://127.0.0.1:1", "{ backend: memory }") + fmt.Sprintf(`
alerts:
  - { name: stuck, counter: a, value: 1, webhook: %q }
  - { name: fine, counter: b, value: 1, webhook: %q }
`, stuck.URL, ok.URL)
	h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), AlertBackoff: 10 * time.Millisecond})
	h.adminDo("POST", "/v1/counters/a/increment", "")
	select {
	case <-stuckCalled:
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck webhook was never called")
	}
	h.adminDo("POST", "/v1/counters/b/increment", "")
	select {
	case ev := <-fine:
		if ev.Alert != "fine" || ev.Counter != "b" || ev.Value != 1 {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the healthy alert's event waited behind the stuck webhook")
	}
}
