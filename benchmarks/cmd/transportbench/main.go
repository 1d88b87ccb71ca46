// Command transportbench compares the gateway's two upstream transports
// side by side with nginx's proxy_pass: it starts one upstream, the sluice
// binary with no policy twice (upstream_transport: fast and standard) and
// nginx when installed, and drives each in interleaved rounds with wrk
// (a built-in closed-loop generator when wrk is missing) in three
// scenarios: GET with 64 connections, GET with 1 connection, and POST of a
// 1 KB body with 64 connections. Beside requests per second and latency it
// reports each proxy's CPU time per request (user + system, from
// /proc/PID/stat, nginx's workers included), and prints a Markdown table
// with the ratios issue 17 tracks.
//
//	cd benchmarks && go run ./cmd/transportbench                   # 5 rounds of 10s
//	cd benchmarks && go run ./cmd/transportbench -rounds 1 -d 1s   # smoke run
//	cd benchmarks && go run ./cmd/transportbench -base main        # this tree against main
//
// With -base REV it also builds sluice as it is at git revision REV and
// runs that build's fast transport beside this tree's, reporting the
// medians of the per-round ratios of the two (the rounds of a shared machine
// differ more than the two builds within one round).
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/benchmarks/internal/procs"
)

var (
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	duration = flag.Duration("d", 10*time.Second, "load per proxy, scenario and round")
	conns    = flag.Int("c", 64, "connections of the many-connection scenarios")
	noNginx  = flag.Bool("no-nginx", false, "leave nginx out even when installed")
	base     = flag.String("base", "", "a git revision: also run its build's fast transport and compare this tree's with it")
)

// baseName is the proxy name of the -base build.
const baseName = "sluice-fast@base"

type proxy struct {
	name string
	url  string
	pids func() []int // processes whose CPU time is the proxy's
	stop func()
}

type scenario struct {
	name  string
	conns int
	post  bool
}

type result struct {
	rps, p50, p99 float64 // req/s, ms, ms
	cpuPerReq     float64 // µs of CPU per request
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	tmp, err := os.MkdirTemp("", "transportbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	upstream := procs.Upstream()
	bin := buildSluice(tmp, "..", "sluice")
	var proxies []*proxy
	if _, err := exec.LookPath("nginx"); err == nil && !*noNginx {
		url, pid, stop := procs.Nginx(tmp, upstream)
		// The master and its workers, looked up at each measurement: the
		// workers may start after the master listens.
		proxies = append(proxies, &proxy{name: "nginx", url: url, pids: func() []int { return procs.Children(pid) }, stop: stop})
	}
	proxies = append(proxies, startSluice(tmp, bin, "sluice-standard", "standard", upstream), startSluice(tmp, bin, "sluice-fast", "fast", upstream))
	if *base != "" {
		src := filepath.Join(tmp, "base")
		if err := os.MkdirAll(src, 0o755); err != nil {
			log.Fatal(err)
		}
		// The revision's tree, without touching the repository's worktrees.
		export := exec.Command("sh", "-c", `git -C .. archive "$0" | tar -x -C "$1"`, *base, src)
		if out, err := export.CombinedOutput(); err != nil {
			log.Fatalf("exporting %s: %v\n%s", *base, err, out)
		}
		proxies = append(proxies, startSluice(tmp, buildSluice(tmp, src, "sluice-base"), baseName, "fast", upstream))
	}
	defer func() {
		for _, p := range proxies {
			p.stop()
		}
	}()
	tool := "go"
	if _, err := exec.LookPath("wrk"); err == nil {
		tool = "wrk"
	}
	postScript := filepath.Join(tmp, "post.lua")
	if err := os.WriteFile(postScript, []byte("wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 1024)\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"), 0o600); err != nil {
		log.Fatal(err)
	}
	scenarios := []scenario{
		{fmt.Sprintf("GET, %d connections", *conns), *conns, false},
		{"GET, 1 connection", 1, false},
		{fmt.Sprintf("POST 1 KB, %d connections", *conns), *conns, true},
	}
	fmt.Fprintf(os.Stderr, "transportbench: %s, %d CPUs, %s, %d rounds of %v\n", tool, runtime.NumCPU(), runtime.Version(), *rounds, *duration)
	for _, p := range proxies { // warm up
		run(tool, postScript, p, scenarios[0], time.Second)
	}
	results := map[string]map[string][]result{} // scenario -> proxy -> rounds
	for _, sc := range scenarios {
		results[sc.name] = map[string][]result{}
		for r := 1; r <= *rounds; r++ {
			for _, p := range proxies {
				res := run(tool, postScript, p, sc, *duration)
				results[sc.name][p.name] = append(results[sc.name][p.name], res)
				fmt.Fprintf(os.Stderr, "round %d  %-26s %-16s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %6.1f µs CPU/req\n",
					r, sc.name, p.name, res.rps, res.p50, res.p99, res.cpuPerReq)
			}
		}
	}
	report(os.Stdout, tool, scenarios, proxies, results)
}

// run drives p with one scenario and measures the proxy's CPU time over it.
func run(tool, postScript string, p *proxy, sc scenario, d time.Duration) result {
	cpu0 := procs.CPUTime(p.pids()...)
	var res result
	var n float64
	if tool == "wrk" {
		res, n = wrk(p.url, postScript, sc, d)
	} else {
		res, n = goLoad(p.url, sc, d)
	}
	if n > 0 {
		res.cpuPerReq = float64(procs.CPUTime(p.pids()...)-cpu0) / float64(time.Microsecond) / n
	}
	return res
}

func report(w io.Writer, tool string, scenarios []scenario, proxies []*proxy, results map[string]map[string][]result) {
	fmt.Fprintf(w, "\nMedians of %d interleaved rounds of %v; %s; %d CPUs; %s.\n\n", *rounds, *duration, tool, runtime.NumCPU(), runtime.Version())
	fmt.Fprintln(w, "| scenario | proxy | req/s | p50 ms | p99 ms | proxy CPU per request |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, sc := range scenarios {
		for _, p := range proxies {
			m := medians(results[sc.name][p.name])
			fmt.Fprintf(w, "| %s | %s | %.0f | %.3f | %.3f | %.1f µs |\n", sc.name, p.name, m.rps, m.p50, m.p99, m.cpuPerReq)
		}
	}
	fmt.Fprintln(w, "\n| scenario | fast / nginx req/s | fast / standard req/s | fast CPU per request vs standard | fast p99 / standard p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, sc := range scenarios {
		fast, std := medians(results[sc.name]["sluice-fast"]), medians(results[sc.name]["sluice-standard"])
		ng := "n/a"
		if rs, ok := results[sc.name]["nginx"]; ok {
			ng = fmt.Sprintf("%.2fx", fast.rps/medians(rs).rps)
		}
		fmt.Fprintf(w, "| %s | %s | %.2fx | %+.0f%% | %.2fx |\n", sc.name, ng, fast.rps/std.rps, 100*(fast.cpuPerReq/std.cpuPerReq-1), fast.p99/std.p99)
	}
	flags := ""
	if *noNginx {
		flags += " -no-nginx"
	}
	if *base != "" {
		flags += " -base " + *base
		fmt.Fprintf(w, "\nThis tree's fast transport against %s's: medians of the per-round ratios.\n\n", *base)
		fmt.Fprintln(w, "| scenario | req/s | CPU per request | p99 |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, sc := range scenarios {
			fast, old := results[sc.name]["sluice-fast"], results[sc.name][baseName]
			ratio := func(f func(result) float64) float64 {
				rs := make([]float64, len(fast))
				for i := range fast {
					rs[i] = f(fast[i]) / f(old[i])
				}
				return median(rs)
			}
			fmt.Fprintf(w, "| %s | %.2fx | %+.0f%% | %.2fx |\n", sc.name, ratio(func(r result) float64 { return r.rps }),
				100*(ratio(func(r result) float64 { return r.cpuPerReq })-1), ratio(func(r result) float64 { return r.p99 }))
		}
	}
	fmt.Fprintf(w, "\nCommand: cd benchmarks && go run ./cmd/transportbench -rounds %d -d %v -c %d%s\n", *rounds, *duration, *conns, flags)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func medians(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	return result{
		rps:       pick(func(r result) float64 { return r.rps }),
		p50:       pick(func(r result) float64 { return r.p50 }),
		p99:       pick(func(r result) float64 { return r.p99 }),
		cpuPerReq: pick(func(r result) float64 { return r.cpuPerReq }),
	}
}

// buildSluice builds cmd/sluice of the module at src into dir/name.
func buildSluice(dir, src, name string) string {
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		log.Fatalf("building sluice in %s: %v\n%s", src, err, out)
	}
	return bin
}

// startSluice runs bin, named name, with no policy on the transport.
func startSluice(dir, bin, name, transport, upstream string) *proxy {
	addr := procs.FreeAddr()
	cfg := fmt.Sprintf("listen: %q\nupstream_transport: %s\nadmin: { listen: %q, token: bench }\nlog: { level: warn, access: false }\n"+
		"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"http://%s\" } }\n", addr, transport, procs.FreeAddr(), upstream)
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
	pid := cmd.Process.Pid
	return &proxy{name: name, url: "http://" + addr + "/", pids: func() []int { return []int{pid} },
		stop: func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }}
}

// wrk runs wrk and returns its figures and the number of requests.
func wrk(url, postScript string, sc scenario, d time.Duration) (result, float64) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t1", "-c" + strconv.Itoa(sc.conns), "-d" + strconv.Itoa(secs) + "s", "--latency"}
	if sc.post {
		args = append(args, "-s", postScript)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		log.Fatalf("wrk: %v\n%s", err, out)
	}
	var res result
	var n float64
	sc2 := bufio.NewScanner(bytes.NewReader(out))
	for sc2.Scan() {
		f := strings.Fields(sc2.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			res.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			res.p50 = procs.WrkMS(f[1])
		case len(f) == 2 && f[0] == "99%":
			res.p99 = procs.WrkMS(f[1])
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			n, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if bytes.Contains(out, []byte("Non-2xx")) || bytes.Contains(out, []byte("Socket errors")) {
		log.Printf("warning: errors from %s:\n%s", url, out)
	}
	return res, n
}

// goLoad is a closed-loop generator for machines without wrk. It shares
// the CPU with the proxies, so its figures are only for comparison within
// one run.
func goLoad(url string, sc scenario, d time.Duration) (result, float64) {
	tr := &http.Transport{MaxIdleConnsPerHost: sc.conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	body := bytes.Repeat([]byte("x"), 1024)
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range sc.conns {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				var resp *http.Response
				var err error
				if sc.post {
					resp, err = client.Post(url, "application/octet-stream", bytes.NewReader(body))
				} else {
					resp, err = client.Get(url)
				}
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
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))]) / 1e6
	}
	return result{rps: float64(n.Load()) / time.Since(start).Seconds(), p50: pct(0.5), p99: pct(0.99)}, float64(n.Load())
}
