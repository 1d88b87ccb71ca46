package gateway_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/limiter"
)

// TestCalendarConfig: calendar and timezone are checked with their field
// path and line, and a valid calendar quota needs no window.
func TestCalendarConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ policy, want string }{
		{"{ limit: 10000, calendar: month, timezone: Europe/Berlin }", ""},
		{"{ limit: 100, window: 1d, calendar: day }", ""},
		{"{ limit: 100, calendar: week, algorithm: fixed_window, timezone: America/New_York }", ""},
		{"{ limit: 100, calendar: month, timezone: Mars/Olympus }", `:4: policies.q.timezone: unknown time zone "Mars/Olympus"`},
		{"{ limit: 100, calendar: fortnight }", `:4: policies.q.calendar: must be day, week or month, got "fortnight"`},
		{"{ limit: 100, window: 1h, calendar: day }", `:4: policies.q.window: a calendar day is a day`},
		{"{ limit: 100, calendar: day, algorithm: gcra }", `:4: policies.q.algorithm: a calendar quota counts in fixed windows`},
		{"{ limit: 100, window: 1m, timezone: UTC }", `:4: policies.q.timezone: applies to calendar quotas only`},
	} {
		path := writeConfig(t, "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\npolicies:\n  q: "+tc.policy+"\n")
		cfg, err := gateway.Load(path, []string{}, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.policy, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), path+tc.want)):
			t.Errorf("%s: got %v, want %q", tc.policy, err, tc.want)
		case tc.want == "" && cfg.Policies["q"].Calendar == "":
			t.Errorf("%s: calendar lost", tc.policy)
		}
	}
}

// TestCalendarHeaders: a monthly quota's headers count down to the end of
// the month in its time zone, not to a multiple of 31 days since 1970.
func TestCalendarHeaders(t *testing.T) {
	t.Parallel()
	h := startGateway(t, `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: x }
log: { access: false }
policies:
  monthly: { limit: 2, calendar: month, timezone: Asia/Tokyo }
routes:
  - name: r
    match: { path_prefix: / }
    respond: { status: 200, body: "ok" }
    policies: [monthly]
`)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 200, 429} {
		before := time.Now()
		resp, body := h.get("/")
		after := time.Now()
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d %s, want %d", i, resp.StatusCode, body, want)
		}
		_, end := limiter.Period(limiter.CalendarMonth, tokyo, before)
		if _, end2 := limiter.Period(limiter.CalendarMonth, tokyo, after); !end2.Equal(end) {
			t.Skip("the month ended during the request")
		}
		lo, hi := int64(end.Sub(after)/time.Second), int64((end.Sub(before)+time.Second-1)/time.Second)
		names := []string{"X-RateLimit-Reset"}
		if want == 429 {
			names = append(names, "Retry-After")
		}
		for _, name := range names {
			got, err := strconv.ParseInt(resp.Header.Get(name), 10, 64)
			if err != nil || got < lo || got > hi {
				t.Fatalf("request %d: %s %q, want between %d and %d (the end of the month in Tokyo)", i, name, resp.Header.Get(name), lo, hi)
			}
		}
		if p := resp.Header.Get("RateLimit-Policy"); p != `"monthly";q=2;w=2678400` {
			t.Fatalf("RateLimit-Policy %q", p)
		}
	}
}
