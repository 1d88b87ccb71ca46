// Command loadbench measures the gateway as a proxy: it starts an upstream,
// the sluice binary in several configs and nginx's proxy_pass when nginx is
// installed, drives each with closed-loop load (wrk when installed, else a
// built-in generator), interleaves the configs over several rounds, and
// prints medians and the ratios the project tracks. It writes RESULTS.md
// and results.png beside itself.
//
//	cd benchmarks && go run ./cmd/loadbench            # 5 rounds of 5s
//	cd benchmarks && go run ./cmd/loadbench -quick     # under 60s
//	cd benchmarks && go run ./cmd/loadbench -json      # one JSON object per line
//	cd benchmarks && go run ./cmd/loadbench -c 64 -keys 100000   # issue 12's setting
//
// Every policy is keyed by an X-Key header that the load spreads over -keys
// distinct values (0: one key, the client address). Each sample also
// reports the gateway's CPU time per request (from /proc/<pid>/stat) and,
// for the Redis configs, the Redis server's (from INFO cpu).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/benchmarks/internal/procs"
)

type target struct {
	pid    int // the sluice process
	redis  bool
	name   string
	config string // sluice config body (policies, store, route policies); empty for nginx
	nginx  bool
	url    string
	stop   func()
}

type sample struct {
	Config string  `json:"config"`
	Round  int     `json:"round"`
	Conns  int     `json:"connections"`
	RPS    float64 `json:"req_per_s"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Tool   string  `json:"tool"`
	// CPU time per request served, in microseconds: the gateway's, and
	// the Redis server's for the Redis configs.
	GatewayCPU float64 `json:"gateway_cpu_us_per_req"`
	RedisCPU   float64 `json:"redis_cpu_us_per_req,omitempty"`
}

var (
	quick    = flag.Bool("quick", false, "3 short rounds; finishes in under 60s")
	asJSON   = flag.Bool("json", false, "print one JSON object per line; the last is the summary")
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	duration = flag.Duration("d", 5*time.Second, "load per config per round")
	conns    = flag.Int("c", 32, "concurrent connections")
	redis    = flag.String("redis", envOr("SLUICE_TEST_REDIS", "127.0.0.1:6379"), "Redis address for the Redis configs; empty skips them")
	out      = flag.String("out", ".", "directory for RESULTS.md and results.png")
	nkeys    = flag.Int("keys", 100000, "distinct X-Key values the load spreads over; 0 keys policies by client address")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	flag.Parse()
	if *quick {
		*rounds, *duration = 3, time.Second
	}
	log.SetFlags(0)
	tmp, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	upstream := procs.Upstream()
	bin := filepath.Join(tmp, "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = ".." // the gateway builds in its own module, with its own go.sum
	if out, err := build.CombinedOutput(); err != nil {
		log.Fatalf("building sluice: %v\n%s", err, out)
	}
	prefix := fmt.Sprintf("loadbench:%d:", time.Now().UnixNano())
	keyed := ""
	if *nkeys > 0 {
		keyed = `, key: ["header:X-Key"]`
	}
	policy := func(alg string) string {
		return fmt.Sprintf("policies:\n  p: { algorithm: %s, limit: 1000000000, window: 1m%s }\n", alg, keyed)
	}
	redisStore := func(extra string) string {
		return fmt.Sprintf("store: { backend: redis, redis: { addrs: [%q], prefix: %q, timeout: 200ms%s } }\n", *redis, prefix, extra)
	}
	targets := []*target{
		{name: "no-policy", config: ""},
		{name: "memory-sliding_window", config: policy("sliding_window")},
	}
	if *redis != "" && redisUp(*redis) {
		targets = append(targets,
			&target{name: "redis-sliding_window", config: policy("sliding_window") + redisStore("")},
			&target{name: "redis-fixed_window", config: policy("fixed_window") + redisStore("")},
			// A log holds every admission of its window: a short one.
			&target{name: "redis-sliding_log", config: strings.Replace(policy("sliding_log"), "window: 1m", "window: 2s", 1) + redisStore("")},
			&target{name: "redis-gcra", config: strings.Replace(policy("gcra"), "1000000000", "10000000", 1) + redisStore("")},
			&target{name: "redis-batched", config: policy("sliding_window") + redisStore(", batch_interval: 100ms")},
		)
	}
	if _, err := exec.LookPath("nginx"); err == nil {
		targets = append(targets, &target{name: "nginx", nginx: true})
	}
	for _, t := range targets {
		if t.nginx {
			t.url, _, t.stop = procs.Nginx(tmp, upstream)
		} else {
			t.url, t.stop, t.pid = startSluice(tmp, bin, t.name, t.config, upstream)
			t.redis = strings.Contains(t.config, "backend: redis")
		}
		defer t.stop()
	}
	if *nkeys > 0 {
		wrkScript = filepath.Join(tmp, "keys.lua")
		lua := fmt.Sprintf("request = function()\n  return wrk.format(nil, nil, { [\"X-Key\"] = tostring(math.random(%d)) })\nend\n", *nkeys)
		if err := os.WriteFile(wrkScript, []byte(lua), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	tool := "go"
	if _, err := exec.LookPath("wrk"); err == nil {
		tool = "wrk"
	}
	var samples []sample
	emit := func(s sample) {
		samples = append(samples, s)
		if *asJSON {
			b, _ := json.Marshal(s)
			fmt.Println(string(b))
		} else {
			fmt.Fprintf(os.Stderr, "round %d %-22s c=%-3d %9.0f req/s  p50 %.3f ms  p99 %.3f ms  gateway %.1f µs/req  redis %.1f µs/req\n",
				s.Round, s.Config, s.Conns, s.RPS, s.P50, s.P99, s.GatewayCPU, s.RedisCPU)
		}
	}
	for _, t := range targets { // warm up
		load(tool, t.url, *conns, 500*time.Millisecond)
	}
	for r := 1; r <= *rounds; r++ {
		for _, t := range targets {
			s := measure(tool, t, *conns, *duration)
			s.Config, s.Round, s.Conns, s.Tool = t.name, r, *conns, tool
			emit(s)
		}
	}
	// One connection: what the limiter adds to a lone request's latency.
	for _, t := range targets {
		if t.name != "no-policy" && t.name != "redis-sliding_window" && t.name != "memory-sliding_window" {
			continue
		}
		for r := 1; r <= *rounds; r++ {
			s := measure(tool, t, 1, *duration/2)
			s.Config, s.Round, s.Conns, s.Tool = t.name, r, 1, tool
			emit(s)
		}
	}
	sum := summarize(samples, targets)
	if *asJSON {
		b, _ := json.Marshal(sum)
		fmt.Println(string(b))
	}
	if err := writeResults(*out, samples, sum, targets, tool); err != nil {
		log.Fatal(err)
	}
}

func redisUp(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func startSluice(dir, bin, name, extra, upstream string) (string, func(), int) {
	addr := procs.FreeAddr()
	routePolicies := ""
	if strings.Contains(extra, "policies:") {
		routePolicies = ", policies: [p]"
	}
	cfg := fmt.Sprintf("listen: %q\nadmin: { listen: %q, token: bench }\nlog: { level: warn, access: false }\n%sroutes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"http://%s\" }%s }\n",
		addr, procs.FreeAddr(), extra, upstream, routePolicies)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	procs.WaitUp(addr)
	return "http://" + addr + "/", func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, cmd.Process.Pid
}

// measure loads t and adds the CPU time per request of the gateway and,
// for a Redis config, of the Redis server.
func measure(tool string, t *target, c int, d time.Duration) sample {
	gw0, rd0 := procs.CPUTime(t.pid), time.Duration(0)
	if t.redis {
		rd0 = redisCPU(*redis)
	}
	start := time.Now()
	s := load(tool, t.url, c, d)
	n := s.RPS * time.Since(start).Seconds()
	if n > 0 && t.pid > 0 {
		s.GatewayCPU = float64(procs.CPUTime(t.pid)-gw0) / float64(time.Microsecond) / n
	}
	if n > 0 && t.redis {
		s.RedisCPU = float64(redisCPU(*redis)-rd0) / float64(time.Microsecond) / n
	}
	return s
}

// redisCPU returns the Redis server's used CPU time so far (INFO cpu).
func redisCPU(addr string) time.Duration {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("INFO cpu\r\n")); err != nil {
		return 0
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return 0
	}
	size, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0
	}
	var total float64
	for line := range strings.SplitSeq(string(body), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

func load(tool, url string, c int, d time.Duration) sample {
	if tool == "wrk" {
		return wrk(url, c, d)
	}
	return goLoad(url, c, d)
}

func wrk(url string, c int, d time.Duration) sample {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t1", "-c" + strconv.Itoa(c), "-d" + strconv.Itoa(secs) + "s", "--latency"}
	if wrkScript != "" {
		args = append(args, "-s", wrkScript)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		log.Fatalf("wrk: %v\n%s", err, out)
	}
	var s sample
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			s.RPS, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			s.P50 = procs.WrkMS(f[1])
		case len(f) == 2 && f[0] == "99%":
			s.P99 = procs.WrkMS(f[1])
		}
	}
	if strings.Contains(string(out), "Non-2xx") {
		log.Printf("warning: non-2xx answers from %s:\n%s", url, out)
	}
	return s
}

// wrkScript, when set, is a wrk script that spreads requests over -keys
// X-Key values.
var wrkScript string

// goLoad is a closed-loop generator for machines without wrk.
func goLoad(url string, c int, d time.Duration) sample {
	tr := &http.Transport{MaxIdleConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n, seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", url, nil)
				if *nkeys > 0 {
					req.Header.Set("X-Key", strconv.FormatInt(seq.Add(1)%int64(*nkeys), 10))
				}
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))]) / 1e6
	}
	return sample{RPS: float64(n.Load()) / time.Since(start).Seconds(), P50: pct(0.5), P99: pct(0.99)}
}
