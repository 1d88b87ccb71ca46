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
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type target struct {
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
}

var (
	quick    = flag.Bool("quick", false, "3 short rounds; finishes in under 60s")
	asJSON   = flag.Bool("json", false, "print one JSON object per line; the last is the summary")
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	duration = flag.Duration("d", 5*time.Second, "load per config per round")
	conns    = flag.Int("c", 32, "concurrent connections")
	redis    = flag.String("redis", envOr("SLUICE_TEST_REDIS", "127.0.0.1:6379"), "Redis address for the Redis configs; empty skips them")
	out      = flag.String("out", ".", "directory for RESULTS.md and results.png")
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

	upstream := startUpstream()
	bin := filepath.Join(tmp, "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = ".." // the gateway builds in its own module, with its own go.sum
	if out, err := build.CombinedOutput(); err != nil {
		log.Fatalf("building sluice: %v\n%s", err, out)
	}
	prefix := fmt.Sprintf("loadbench:%d:", time.Now().UnixNano())
	policy := func(alg string) string {
		return fmt.Sprintf("policies:\n  p: { algorithm: %s, limit: 1000000000, window: 1m }\n", alg)
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
			&target{name: "redis-gcra", config: strings.Replace(policy("gcra"), "1000000000", "10000000", 1) + redisStore("")},
			&target{name: "redis-batched", config: policy("sliding_window") + redisStore(", batch_interval: 100ms")},
		)
	}
	if _, err := exec.LookPath("nginx"); err == nil {
		targets = append(targets, &target{name: "nginx", nginx: true})
	}
	for _, t := range targets {
		if t.nginx {
			t.url, t.stop = startNginx(tmp, upstream)
		} else {
			t.url, t.stop = startSluice(tmp, bin, t.name, t.config, upstream)
		}
		defer t.stop()
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
			fmt.Fprintf(os.Stderr, "round %d %-22s c=%-3d %9.0f req/s  p50 %.3f ms  p99 %.3f ms\n", s.Round, s.Config, s.Conns, s.RPS, s.P50, s.P99)
		}
	}
	for _, t := range targets { // warm up
		load(tool, t.url, *conns, 500*time.Millisecond)
	}
	for r := 1; r <= *rounds; r++ {
		for _, t := range targets {
			s := load(tool, t.url, *conns, *duration)
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
			s := load(tool, t.url, 1, *duration/2)
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

func startUpstream() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	body := []byte("hello from the upstream\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String()
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUp(addr string) {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	log.Fatalf("nothing listens on %s", addr)
}

func startSluice(dir, bin, name, extra, upstream string) (string, func()) {
	addr := freeAddr()
	routePolicies := ""
	if strings.Contains(extra, "policies:") {
		routePolicies = ", policies: [p]"
	}
	cfg := fmt.Sprintf("listen: %q\nadmin: { listen: %q, token: bench }\nlog: { level: warn, access: false }\n%sroutes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"http://%s\" }%s }\n",
		addr, freeAddr(), extra, upstream, routePolicies)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	waitUp(addr)
	return "http://" + addr + "/", func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

func startNginx(dir, upstream string) (string, func()) {
	addr := freeAddr()
	ndir := filepath.Join(dir, "nginx")
	_ = os.MkdirAll(filepath.Join(ndir, "logs"), 0o755)
	conf := fmt.Sprintf(`worker_processes %d;
pid %s/nginx.pid;
error_log %s/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server %s; keepalive 64; }
  server {
    listen %s;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, runtime.NumCPU(), ndir, ndir, upstream, addr)
	path := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("nginx", "-p", ndir, "-c", path, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	waitUp(addr)
	return "http://" + addr + "/", func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

// load drives url with c connections for d.
func load(tool, url string, c int, d time.Duration) sample {
	if tool == "wrk" {
		return wrk(url, c, d)
	}
	return goLoad(url, c, d)
}

func wrk(url string, c int, d time.Duration) sample {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(c), "-d"+strconv.Itoa(secs)+"s", "--latency", url).CombinedOutput()
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
			s.P50 = wrkMS(f[1])
		case len(f) == 2 && f[0] == "99%":
			s.P99 = wrkMS(f[1])
		}
	}
	if strings.Contains(string(out), "Non-2xx") {
		log.Printf("warning: non-2xx answers from %s:\n%s", url, out)
	}
	return s
}

func wrkMS(v string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, _ := strconv.ParseFloat(n, 64)
			return f * u.ms
		}
	}
	return 0
}

// goLoad is a closed-loop generator for machines without wrk.
func goLoad(url string, c int, d time.Duration) sample {
	tr := &http.Transport{MaxIdleConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(url)
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
