package gateway

import (
	"net"
	"strconv"

	"github.com/sluice-gateway/sluice/middleware"
)

// DecisionConfig configures the HTTP decision endpoint: a listener of its
// own that answers nginx auth_request, Traefik ForwardAuth and Caddy
// forward_auth calls with the decision the proxy listener would make.
type DecisionConfig struct {
	Listen string `koanf:"listen"` // empty (default): off
	// TrustedProxies are the CIDRs whose forwarded client address
	// (X-Forwarded-For, X-Real-IP) the endpoint believes; empty means the
	// top-level trusted_proxies. A call from any other peer is keyed by the
	// peer's own address.
	TrustedProxies []string `koanf:"trusted_proxies"`
}

// RLSConfig configures Envoy's rate limit service
// (envoy.service.ratelimit.v3.RateLimitService) over gRPC.
type RLSConfig struct {
	Listen  string            `koanf:"listen"` // empty (default): off
	Domains []RLSDomainConfig `koanf:"domains"`
}

// RLSDomainConfig maps the descriptors of one rate limit domain to
// policies.
type RLSDomainConfig struct {
	Domain      string                `koanf:"domain"`
	Descriptors []RLSDescriptorConfig `koanf:"descriptors"`
}

// RLSDescriptorConfig matches one entry of a descriptor; nested
// descriptors match the entries after it.
type RLSDescriptorConfig struct {
	Key         string                `koanf:"key"`
	Value       string                `koanf:"value"`  // empty: any value, and each value is a key of its own
	Policy      string                `koanf:"policy"` // empty: a descriptor that ends here is not limited
	Descriptors []RLSDescriptorConfig `koanf:"descriptors"`
}

// validateIntegrations checks the decision and rls sections.
func (c *Config) validateIntegrations(bad func(path, format string, args ...any)) {
	checkListen := func(path, addr string) {
		if addr == "" {
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(path, "must be host:port, got %q", addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(path, "bad port %q", port)
		}
	}
	checkListen("decision.listen", c.Decision.Listen)
	checkListen("rls.listen", c.RLS.Listen)
	for i, tp := range c.Decision.TrustedProxies {
		if _, err := middleware.NewIPResolver([]string{tp}, 64); err != nil {
			bad("decision.trusted_proxies["+strconv.Itoa(i)+"]", "%q is neither a CIDR nor an address", tp)
		}
	}
	domains := map[string]bool{}
	for i, d := range c.RLS.Domains {
		path := "rls.domains[" + strconv.Itoa(i) + "]"
		if d.Domain == "" {
			bad(path+".domain", "must not be empty")
		} else if domains[d.Domain] {
			bad(path+".domain", "duplicate domain %q", d.Domain)
		}
		domains[d.Domain] = true
		c.validateDescriptors(path, d.Descriptors, bad)
	}
}

func (c *Config) validateDescriptors(path string, ds []RLSDescriptorConfig, bad func(path, format string, args ...any)) {
	type kv struct{ key, value string }
	seen := map[kv]bool{}
	for i, d := range ds {
		p := path + ".descriptors[" + strconv.Itoa(i) + "]"
		if d.Key == "" {
			bad(p+".key", "must not be empty")
		}
		if seen[kv{d.Key, d.Value}] {
			bad(p, "duplicate descriptor key %q value %q", d.Key, d.Value)
		}
		seen[kv{d.Key, d.Value}] = true
		if d.Policy != "" {
			if _, ok := c.Policies[d.Policy]; !ok {
				bad(p+".policy", "unknown policy %q", d.Policy)
			}
		} else if len(d.Descriptors) == 0 {
			bad(p, "needs a policy or nested descriptors")
		}
		c.validateDescriptors(p, d.Descriptors, bad)
	}
}
