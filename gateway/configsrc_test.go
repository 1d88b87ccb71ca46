package gateway_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

// TestConfigOnePass: a file with seven mistakes of every kind (unknown
// field, wrong types, unitless and malformed durations, broken rules)
// reports all seven at once, each with its field path and its line.
func TestConfigOnePass(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `listen: "127.0.0.1:0"
shutdown_timeout: 30
policies:
  p:
    limit: lots
    window: 10 seconds
  q: { limit: 0, window: 1d }
routes:
  - name: r
    match: { path_prefix: / }
    upstream: { url: "http://x", timeout: 30 }
    policies: [p, nope]
bogus: 1
`)
	_, err := gateway.Load(path, []string{}, nil)
	var errs gateway.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		path + ":13: bogus: unknown field",
		path + ":2: shutdown_timeout: 30 has no unit: use 30s",
		path + `:5: policies.p.limit: cannot parse value as 'int64'`,
		path + `:6: policies.p.window: "10 seconds" is not a duration`,
		path + ":11: routes[0].upstream.timeout: 30 has no unit: use 30s",
		path + ":7: policies.q.limit: must be > 0",
		path + `:12: routes[0].policies[1]: unknown policy "nope"`,
	}
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q:\n%v", w, err)
		}
	}
	for _, e := range errs {
		var ce *gateway.ConfigError
		if !errors.As(e, &ce) || ce.Path == "" || ce.Line == 0 {
			t.Errorf("%v: want a ConfigError with a path and a line", e)
		}
	}
}

// TestDurations: a unit is required (a bare 30 would be 30ns); d is a day.
func TestDurations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		window string
		want   time.Duration
		err    string // part of the error; empty: valid
	}{
		{"1s", time.Second, ""},
		{"90m", 90 * time.Minute, ""},
		{"1d", 24 * time.Hour, ""},
		{"7d", 7 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{`"250ms"`, 250 * time.Millisecond, ""},
		{"30", 0, "policies.p.window: 30 has no unit: use 30s"},
		{"2.5", 0, "policies.p.window: 2.5 has no unit: use 2.5s"},
		{`"30"`, 0, `policies.p.window: "30" has no unit: use 30s`},
		{"10 seconds", 0, `policies.p.window: "10 seconds" is not a duration: use a number with a unit, such as 30s`},
		{"1w", 0, `policies.p.window: "1w" is not a duration`},
		{"d", 0, `policies.p.window: "d" is not a duration`},
		{"1dd", 0, `policies.p.window: "1dd" is not a duration`},
		{"200000d", 0, `policies.p.window: "200000d" is too long`},
		{"-1d", 0, "policies.p.window: must be > 0"},
	} {
		t.Run(tc.window, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, "policies:\n  p:\n    limit: 5\n    window: "+tc.window+"\n")
			cfg, err := gateway.Load(path, []string{}, nil)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Policies["p"].Window; got != tc.want {
					t.Fatalf("window %s: got %v, want %v", tc.window, got, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), path+":4: "+tc.err) {
				t.Fatalf("window %s: got %v, want an error at line 4 with %q", tc.window, err, tc.err)
			}
		})
	}
	if d, err := gateway.ParseDuration("0"); err != nil || d != 0 {
		t.Fatalf(`ParseDuration("0") = %v, %v`, d, err)
	}
}

// TestEnvErrorsNameTheVariable: a bad value from the environment names
// the variable that set it, not a line of the file.
func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "store: { backend: memory }\npolicies:\n  per-ip: { limit: 5, window: 10s }\n")
	_, err := gateway.Load(path, []string{
		"SLUICE_STORE__REDIS__TIMEOUT=5",
		"SLUICE_POLICIES__PER-IP__LIMIT=-3",
		"SLUICE_TRUSTED_PROXIES=10.0.0.0/8,bogus",
		"SLUICE_ADMIN__LISTEN=0.0.0.0:9090",
	}, nil)
	for _, want := range []string{
		`environment variable SLUICE_STORE__REDIS__TIMEOUT: store.redis.timeout: "5" has no unit: use 5s`,
		"environment variable SLUICE_POLICIES__PER-IP__LIMIT: policies.per-ip.limit: must be > 0",
		"environment variable SLUICE_TRUSTED_PROXIES: trusted_proxies[1]",
		"admin.token: required when admin.listen (\"0.0.0.0:9090\") is not a loopback address",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// TestYAMLErrorLine: a syntax error names the line where it is.
func TestYAMLErrorLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		line string
	}{
		{"policies:\n  p:\n    limit: 1\n   window: 2s\n", ":4: invalid YAML"},
		{"listen: \":0\"\npolicies:\n  p: { limit: 1\n    window: 1s }\nroutes: []\n", ":4: invalid YAML"},
		{"a: 1\nb:\n\t- x\n", ":3: invalid YAML"},
	} {
		path := writeConfig(t, tc.yaml)
		_, err := gateway.Load(path, []string{}, nil)
		if err == nil || !strings.Contains(err.Error(), path+tc.line) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.line)
		}
	}
}

func ExampleParseDuration() {
	for _, s := range []string{"90s", "1d", "1d12h", "30"} {
		d, err := gateway.ParseDuration(s)
		fmt.Println(d, err)
	}
	// Output:
	// 1m30s <nil>
	// 24h0m0s <nil>
	// 36h0m0s <nil>
	// 0s "30" has no unit: use 30s (or ms, m, h, d)
}
