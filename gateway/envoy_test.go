package gateway_test

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluice-gateway/sluice/gateway"
)

// TestEnvoySnippet checks the README's Envoy integration without an Envoy
// binary: the Envoy config parses into Envoy's bootstrap protobuf and passes
// its validation rules; its rate limit filter names the domain and reaches
// the address of the README's Sluice config; and the descriptors its route
// actions produce, sent to a gateway running that Sluice config, are the
// ones the config limits.
func TestEnvoySnippet(t *testing.T) {
	t.Parallel()
	const heading = "### Envoy (RateLimitService over gRPC)"
	blocks := readmeBlocks(t, heading, "yaml")
	if len(blocks) != 2 {
		t.Fatalf("%d yaml blocks under %q, want 2 (Sluice's, Envoy's)", len(blocks), heading)
	}
	sluiceYAML, envoyYAML := blocks[0], blocks[1]
	cfg, err := gateway.Load(writeConfig(t, sluiceYAML), []string{}, nil)
	if err != nil {
		t.Fatalf("the README's Sluice config: %v", err)
	}
	if len(cfg.RLS.Domains) != 1 {
		t.Fatalf("%d domains", len(cfg.RLS.Domains))
	}

	// Envoy's side: YAML to JSON to the bootstrap message, then its rules.
	var doc any
	if err := yaml.Unmarshal([]byte(envoyYAML), &doc); err != nil {
		t.Fatalf("the README's Envoy config is not YAML: %v", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("the README's Envoy config is not an Envoy bootstrap: %v", err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("the README's Envoy config breaks Envoy's validation rules: %v", err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := boot.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var rl ratelimitv3.RateLimit
	if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(&rl); err != nil {
		t.Fatalf("first HTTP filter: %v", err)
	}
	if rl.Domain != cfg.RLS.Domains[0].Domain {
		t.Fatalf("Envoy's domain %q, Sluice's %q", rl.Domain, cfg.RLS.Domains[0].Domain)
	}
	cluster := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	_, sluicePort, _ := net.SplitHostPort(cfg.RLS.Listen)
	found := false
	for _, c := range boot.StaticResources.Clusters {
		if c.Name != cluster {
			continue
		}
		found = true
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if strconv.Itoa(int(sa.GetPortValue())) != sluicePort {
			t.Fatalf("cluster %s on port %d, Sluice's rls.listen %s", cluster, sa.GetPortValue(), cfg.RLS.Listen)
		}
		var opts upstreamhttpv3.HttpProtocolOptions
		if err := c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts); err != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Fatalf("cluster %s does not speak HTTP/2 (gRPC needs it): %v", cluster, err)
		}
	}
	if !found {
		t.Fatalf("no cluster %q", cluster)
	}

	// The descriptors Envoy's actions make for a request from 203.0.113.8
	// with x-user: alice, against a gateway running the Sluice config.
	h := startGateway(t, strings.Replace(sluiceYAML, cfg.RLS.Listen, "127.0.0.1:0", 1)+`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "t0k" }
routes:
  - { name: api, match: { path_prefix: / }, respond: { status: 200 }, policies: [per-ip] }
`)
	c := rlsClient(t, h.g.RLSAddr())
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetRateLimits()
	wantPolicies := []string{"per-ip", "per-user"}
	if len(routes) != len(wantPolicies) {
		t.Fatalf("%d rate_limits, want %d", len(routes), len(wantPolicies))
	}
	for i, r := range routes {
		var kv []string
		for _, a := range r.Actions {
			kv = append(kv, descriptorEntry(t, a, map[string]string{"x-user": "alice"}, "203.0.113.8")...)
		}
		resp := shouldRateLimit(t, c, rl.Domain, kv...)
		if got := resp.Statuses[0].GetCurrentLimit().GetName(); got != wantPolicies[i] || resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Errorf("rate_limits[%d] %v: policy %q, want %q (%v)", i, kv, got, wantPolicies[i], resp)
		}
	}
}

// descriptorEntry is the entry Envoy makes for action a.
func descriptorEntry(t *testing.T, a *routev3.RateLimit_Action, headers map[string]string, client string) []string {
	t.Helper()
	switch {
	case a.GetRemoteAddress() != nil:
		return []string{"remote_address", client}
	case a.GetGenericKey() != nil:
		key := a.GetGenericKey().GetDescriptorKey()
		if key == "" {
			key = "generic_key"
		}
		return []string{key, a.GetGenericKey().GetDescriptorValue()}
	case a.GetRequestHeaders() != nil:
		rh := a.GetRequestHeaders()
		return []string{rh.GetDescriptorKey(), headers[rh.GetHeaderName()]}
	}
	t.Fatalf("action %v: not modelled by this test", a)
	return nil
}
