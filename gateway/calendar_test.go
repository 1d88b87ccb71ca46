package gateway_test

import (
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway"
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
