package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

// monitoringExprs returns every PromQL expression of the Grafana dashboard
// and the Prometheus rules under deploy/, by where it is.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	b, err := os.ReadFile("../deploy/grafana/sluice-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("dashboard panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "../deploy/prometheus/sluice-rules.yaml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Fatalf("a rule without alert or expr: %+v", r)
			}
			exprs["rule "+r.Alert] = r.Expr
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	return exprs
}

var (
	// selectorRE finds a metric name and its label matchers.
	selectorRE = regexp.MustCompile(`\b(sluice_[a-z_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`by \(([^)]*)\)`)
)

// TestMonitoringKitMetricsExist scrapes a real gateway that has served
// traffic of every kind, and checks that every metric the dashboard and the
// alerting rules query exists, with the labels they match or group on.
func TestMonitoringKitMetricsExist(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	cfg := proxyConfig(up.URL, "{ backend: memory }") + fmt.Sprintf("alerts:\n  - { name: busy, counter: jobs, value: 1, webhook: %q }\n", hook.URL)
	h := startGatewayWith(t, gateway.Options{ConfigPath: writeConfig(t, cfg), AlertBackoff: time.Millisecond})
	for range 5 {
		h.get("/limited/x") // proxied, then rejected
	}
	h.adminDo("PUT", "/v1/counters/jobs", `{"value":5}`)
	_ = h.g.Reload()
	// The alert's delivery is asynchronous.
	var scrape string
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, scrape = h.do("GET", h.admin+"/metrics", "")
		if strings.Contains(scrape, "sluice_alert_deliveries_total{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Series name -> label names seen.
	labels := map[string]map[string]bool{}
	seriesRE := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? `)
	for line := range strings.SplitSeq(scrape, "\n") {
		m := seriesRE.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		if labels[m[1]] == nil {
			labels[m[1]] = map[string]bool{"instance": true, "job": true} // added by Prometheus
		}
		for _, lm := range regexp.MustCompile(`([a-z_]+)="`).FindAllStringSubmatch(m[3], -1) {
			labels[m[1]][lm[1]] = true
		}
	}
	checked := 0
	for where, expr := range monitoringExprs(t) {
		sels := selectorRE.FindAllStringSubmatch(expr, -1)
		if len(sels) == 0 {
			t.Errorf("%s queries no sluice metric: %s", where, expr)
		}
		var names []string
		for _, s := range sels {
			name := s[1]
			have, ok := labels[name]
			if !ok {
				t.Errorf("%s: %s is not in a /metrics scrape", where, name)
				continue
			}
			checked++
			names = append(names, name)
			for _, mm := range matcherRE.FindAllStringSubmatch(s[2], -1) {
				if !have[mm[1]] {
					t.Errorf("%s: %s has no label %q", where, name, mm[1])
				}
			}
		}
		// Grouping labels must exist on some metric of the expression.
		for _, by := range byRE.FindAllStringSubmatch(expr, -1) {
			for l := range strings.SplitSeq(by[1], ",") {
				l = strings.TrimSpace(l)
				found := l == "le" && strings.Contains(expr, "_bucket")
				for _, n := range names {
					found = found || labels[n][l]
				}
				if !found {
					t.Errorf("%s: groups by %q, which none of %v has", where, l, names)
				}
			}
		}
	}
	t.Logf("%d metric selectors checked", checked)
}
