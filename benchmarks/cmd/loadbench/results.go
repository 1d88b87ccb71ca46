package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

type median struct {
	Config string  `json:"config"`
	Conns  int     `json:"connections"`
	RPS    float64 `json:"req_per_s"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	// Gateway and Redis CPU time per request, in microseconds.
	GatewayCPU float64 `json:"gateway_cpu_us_per_req"`
	RedisCPU   float64 `json:"redis_cpu_us_per_req,omitempty"`
}

type summary struct {
	Summary bool               `json:"summary"`
	Medians []median           `json:"medians"`
	Ratios  map[string]float64 `json:"ratios"`
	// P50AddedMS is what the Redis limiter adds to a lone request's p50.
	P50AddedMS float64 `json:"redis_p50_added_ms_one_connection"`
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(samples []sample, targets []*target) summary {
	sum := summary{Summary: true, Ratios: map[string]float64{}}
	by := map[string]map[int][]sample{}
	for _, s := range samples {
		if by[s.Config] == nil {
			by[s.Config] = map[int][]sample{}
		}
		by[s.Config][s.Conns] = append(by[s.Config][s.Conns], s)
	}
	rps := map[string]float64{}
	p50one := map[string]float64{}
	for _, t := range targets {
		for _, c := range []int{*conns, 1} {
			ss := by[t.name][c]
			if len(ss) == 0 {
				continue
			}
			var r, p50, p99, gw, rd []float64
			for _, s := range ss {
				r, p50, p99 = append(r, s.RPS), append(p50, s.P50), append(p99, s.P99)
				gw, rd = append(gw, s.GatewayCPU), append(rd, s.RedisCPU)
			}
			m := median{Config: t.name, Conns: c, RPS: med(r), P50: med(p50), P99: med(p99), GatewayCPU: med(gw), RedisCPU: med(rd)}
			sum.Medians = append(sum.Medians, m)
			if c == *conns {
				rps[t.name] = m.RPS
			} else {
				p50one[t.name] = m.P50
			}
		}
	}
	ratio := func(name, a, b string) {
		if rps[a] > 0 && rps[b] > 0 {
			sum.Ratios[name] = rps[a] / rps[b]
		}
	}
	ratio("no-policy/nginx", "no-policy", "nginx")
	ratio("memory-sliding_window/no-policy", "memory-sliding_window", "no-policy")
	ratio("redis-sliding_window/no-policy", "redis-sliding_window", "no-policy")
	ratio("redis-fixed_window/no-policy", "redis-fixed_window", "no-policy")
	ratio("redis-gcra/no-policy", "redis-gcra", "no-policy")
	ratio("redis-sliding_log/no-policy", "redis-sliding_log", "no-policy")
	ratio("redis-batched/no-policy", "redis-batched", "no-policy")
	if a, b := p50one["redis-sliding_window"], p50one["no-policy"]; a > 0 && b > 0 {
		sum.P50AddedMS = a - b
	}
	return sum
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s %s/%s", runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func writeResults(dir string, samples []sample, sum summary, targets []*target, tool string) error {
	png := filepath.Join(dir, "results.png")
	if err := chart(png, sum); err != nil {
		return err
	}
	var b strings.Builder
	cmd := "go run ./cmd/loadbench " + strings.Join(os.Args[1:], " ")
	fmt.Fprintf(&b, "# Sluice load benchmark\n\n")
	fmt.Fprintf(&b, "- date: %s\n- machine: %s\n- command (in `benchmarks/`): `%s`\n", time.Now().UTC().Format(time.RFC3339), machine(), strings.TrimSpace(cmd))
	fmt.Fprintf(&b, "- load: %s, %d connections, %d interleaved rounds of %v per config; medians below\n", tool, *conns, *rounds, *duration)
	fmt.Fprintf(&b, "- keys: %d distinct X-Key values (0: one key per client address)\n", *nkeys)
	fmt.Fprintf(&b, "- the upstream, every proxy, Redis and the load generator share the machine's cores\n\n")
	fmt.Fprintf(&b, "| config | connections | req/s | p50 ms | p99 ms | gateway CPU µs/req | Redis CPU µs/req |\n|---|---|---|---|---|---|---|\n")
	for _, m := range sum.Medians {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.3f | %.3f | %.1f | %.1f |\n", m.Config, m.Conns, m.RPS, m.P50, m.P99, m.GatewayCPU, m.RedisCPU)
	}
	fmt.Fprintf(&b, "\n| ratio (medians of one run) | value |\n|---|---|\n")
	keys := make([]string, 0, len(sum.Ratios))
	for k := range sum.Ratios {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %.2fx |\n", k, sum.Ratios[k])
	}
	fmt.Fprintf(&b, "| p50 added by the Redis limiter on one connection | %.3f ms |\n", sum.P50AddedMS)
	fmt.Fprintf(&b, "\n![requests per second by config](results.png)\n")
	if acc, err := exec.Command("go", "run", "./accuracy", "-markdown").Output(); err == nil {
		fmt.Fprintf(&b, "\n## Accuracy study\n\n`go run ./accuracy -markdown`: limit 100 per minute; bursty on/off Poisson traffic at 0.5-2x the limit over 60 windows (3 seeds), and an adversary that bursts just before a bucket boundary. Errors are against an exact log, as a share of the limit.\n\n%s", acc)
	}
	if dec, err := os.ReadFile(filepath.Join(dir, "decisions.txt")); err == nil {
		fmt.Fprintf(&b, "\n## Decision benchmarks\n\n`SLUICE_TEST_REDIS=127.0.0.1:6379 go test ./decisions -run '^$' -bench . -benchtime 20000x` (same machine, same run of the day):\n\n```\n%s```\n", dec)
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(b.String()), 0o644)
}

func chart(path string, sum summary) error {
	p := plot.New()
	p.Title.Text = "Sluice: median req/s by config"
	p.Y.Label.Text = "requests per second"
	var vals plotter.Values
	var names []string
	for _, m := range sum.Medians {
		if m.Conns == 1 {
			continue
		}
		vals = append(vals, m.RPS)
		names = append(names, m.Config)
	}
	if len(vals) == 0 {
		return nil
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return err
	}
	p.Add(bars)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -0.8
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}
