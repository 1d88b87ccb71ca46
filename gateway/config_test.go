package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

func TestDefaultConfigIsValid(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.Load("../config.yaml", []string{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Backend != "memory" || len(cfg.Routes) == 0 || cfg.Routes[len(cfg.Routes)-1].Respond == nil {
		t.Fatalf("the default config must use the memory store and a static route: %+v", cfg)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown fields", `
listen: ":0"
lisen: ":1"
store: { backend: memory, redis: { adress: x } }
policies:
  p: { limit: 1, window: 1s, colour: red }
routes:
  - { name: r, match: { path_prefix: / }, respond: { body: x, bogus: 1 }, policies: [p] }
`, []string{"lisen: unknown field", "store.redis.adress: unknown field", "policies.p.colour: unknown field", "routes[0].respond.bogus: unknown field"}},
		{"bad values", `
listen: "nope"
ipv6_prefix: 200
trusted_proxies: ["10.0.0.0/8", "bogus"]
store: { backend: etcd, on_error: maybe, redis: { timeout: -1s, prefix: "a{" } }
log: { level: loud, format: xml }
policies:
  per-ip: { limit: 0, window: 0s, algorithm: leaky, key: [ip, "body:x"], on_missing_key: allow }
  "bad name": { limit: 1, window: 1s }
  o: { limit: 1, window: 1s, overrides: [{ key: "a.b", limit: 0 }] }
routes:
  - { name: "", match: { path_prefix: api }, policies: [nope] }
  - { name: dup, match: { path_prefix: /, methods: [get] }, upstream: { url: "ftp://x" } }
  - { name: dup, match: { path_prefix: /x }, upstream: { url: "http://x" }, respond: { status: 99 } }
`, []string{
			"listen: must be host:port", "ipv6_prefix: must be between", "trusted_proxies[1]", "store.backend: must be memory or redis",
			"store.on_error: must be allow or deny", "store.redis.timeout: must be > 0", "store.redis.prefix", "log.level", "log.format",
			"policies.per-ip.limit: must be > 0", "policies.per-ip.window: must be > 0", "policies.per-ip.algorithm", "policies.per-ip.key[1]",
			"policies.per-ip.on_missing_key", "policies.bad name: policy names must match", "policies.o.overrides[0].limit: must be > 0",
			"routes[0].name", "routes[0].match.path_prefix: must start with /", "routes[0]: needs an upstream or a respond", "routes[0].policies[0]: unknown policy",
			"routes[1].match.methods[0]", "routes[1].upstream.url", "routes[2].name: duplicate", "routes[2]: has both",
		}},
		{"every bad trusted proxy", `
trusted_proxies: ["bogus1", "10.0.0.0/8", "10.0.0.0/33"]
decision: { trusted_proxies: ["x", "y"] }
`, []string{"trusted_proxies[0]", "trusted_proxies[2]", "decision.trusted_proxies[0]", "decision.trusted_proxies[1]"}},
		{"policy listed twice", `
policies:
  p: { limit: 1, window: 1s }
routes:
  - { name: r, match: { path_prefix: / }, respond: { body: x }, policies: [p, p] }
`, []string{`routes[0].policies[1]: policy "p" listed twice`}},
		{"cost and count_status", `
policies:
  p: { limit: 1, window: 1s, count_status: [401, 5xx, 6xx] }
  q: { limit: 1, window: 1s, count_status: [], key: ["header:X-Key + bogus", "ip + route", "route + "] }
  ov:
    key: ["header:X-API-Key", "query:k + route"]
    limit: 1
    window: 1s
    overrides:
      - { key: "k1", limit: 5 }
      - { key: "header:x-api-key:k1", limit: 5 }
      - { key: "query:k:v|route:api", limit: 5 }
      - { key: "203.0.113.7", limit: 5 }
      - { key: "2001:db8::/64", limit: 5 }
      - { key: "query:k:v", limit: 5 }
routes:
  - { name: a, match: { path_prefix: /a }, respond: { body: x }, policies: [p], cost: -1 }
  - { name: b, match: { path_prefix: /b }, respond: { body: x }, policies: [p], cost: 20, cost_header: { name: "X Cost", min: 5, max: 3 } }
  - { name: c, match: { path_prefix: /c }, respond: { body: x }, cost: 2 }
`, []string{`policies.p.count_status: "6xx": want a status from 100 to 599 or a class such as 5xx`, "policies.q.count_status: no status given",
			`policies.q.key[0]: "header:X-Key + bogus": part "bogus": want ip, header:NAME`, `policies.q.key[2]: "route + ": part "": want`,
			`policies.ov.overrides[0].key: "k1" is no key this policy makes: keys carry their source, e.g. "header:x-api-key:k1"`,
			`policies.ov.overrides[5].key: "query:k:v" is no key this policy makes`,
			"routes[0].cost: must be >= 1, got -1", `routes[1].cost_header.name: must be a header name, got "X Cost"`,
			"routes[1].cost_header.max: must be >= min (5), got 3", "routes[1].cost: the cost of a request without X Cost (20) must lie within",
			"routes[2].cost: the route has no policies to charge"}},
		{"type errors", `
policies:
  p: { limit: lots, window: 1s }
`, []string{"limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateway.Load(writeConfig(t, tc.yaml), []string{}, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
			// Keys that the policy can make are accepted.
			for _, ok := range []string{"overrides[1]", "overrides[2]", "overrides[3]", "overrides[4]"} {
				if strings.Contains(err.Error(), "policies.ov."+ok) {
					t.Errorf("errors name %s:\n%v", ok, err)
				}
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
store: { backend: memory }
policies:
  per-ip: { limit: 5, window: 10s }
routes:
  - { name: hello, match: { path_prefix: / }, respond: { body: hi }, policies: [per-ip] }
`)
	cfg, err := gateway.Load(path, []string{
		"SLUICE_STORE__BACKEND=redis",
		"SLUICE_STORE__REDIS__ADDRS=10.0.0.1:6379, 10.0.0.2:6379",
		"SLUICE_STORE__REDIS__TIMEOUT=250ms",
		"SLUICE_ADMIN__TOKEN=s3cret",
		"SLUICE_POLICIES__PER-IP__LIMIT=42",
		"SLUICE_TRUSTED_PROXIES=10.0.0.0/8",
		"SLUICE_NOT_A_FIELD=1",
		"SLUICE_TEST_REDIS=127.0.0.1:6379",
		"HOME=/root",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Backend != "redis" || strings.Join(cfg.Store.Redis.Addrs, ",") != "10.0.0.1:6379,10.0.0.2:6379" ||
		cfg.Store.Redis.Timeout != 250*time.Millisecond || cfg.Admin.Token != "s3cret" || cfg.Policies["per-ip"].Limit != 42 ||
		len(cfg.TrustedProxies) != 1 {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if _, err := gateway.Load(path, []string{"SLUICE_POLICIES__PER-IP__WINDOW=-1s"}, nil); err == nil || !strings.Contains(err.Error(), "policies.per-ip.window") {
		t.Fatalf("a bad override: %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("listen: ':0'\npolicies:\n  p: { limit: 1, window: 1s }\n"))
	f.Add([]byte("routes: [{ name: a, match: { path_prefix: / }, respond: {} }]"))
	f.Add([]byte("policies: { p: { overrides: [{ key: 1 }] } }"))
	f.Add([]byte("\x00\xff: ["))
	f.Fuzz(func(t *testing.T, yaml []byte) {
		path := writeConfig(t, string(yaml))
		cfg, err := gateway.Load(path, []string{}, nil)
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
		if err == nil {
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Load accepted a config that Validate rejects: %v", err)
			}
		}
	})
}
