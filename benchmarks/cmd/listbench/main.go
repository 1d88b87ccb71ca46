// Command listbench measures the busiest-key listing against the targets
// of issue 11:
//
//   - Redis: a redis-server of its own, three sluice gateway processes on
//     it, 100,000 light keys (one request each) and 5 heavy keys (2,000
//     requests each, spread over the gateways) sent through the gateways;
//     then listings of 100 and of 1,000 keys on every gateway: the slowest
//     listing, the most Redis commands one listing took (INFO stats, the
//     gateways otherwise idle), the heavy keys first with their exact summed
//     counts, no key twice. Targets: every listing at most 250 ms and 3,000
//     commands.
//   - Memory store, in process: 200,000 active keys; the slowest listing of
//     100 keys (target 50 ms), and the latency of requests made while
//     listings run against that of requests made without.
//
// Usage:
//
//	cd benchmarks && go run ./cmd/listbench          # the full figures
//	cd benchmarks && go run ./cmd/listbench -quick   # a tenth of the keys, a smoke run
//
// It needs redis-server on the PATH for the Redis part (skipped otherwise).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/benchmarks/internal/procs"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

const heavyKeys = 5

func main() {
	quick := flag.Bool("quick", false, "a tenth of the keys: a smoke run")
	flag.Parse()
	log.SetFlags(0)
	light, heavy, memKeys := 100_000, 2000, 200_000
	if *quick {
		light, heavy, memKeys = 10_000, 200, 20_000
	}
	ok := true
	if _, err := exec.LookPath("redis-server"); err == nil {
		ok = redisPart(light, heavy) && ok
	} else {
		fmt.Println("redis: skipped (no redis-server on the PATH)")
	}
	ok = memoryPart(memKeys, heavy) && ok
	if !ok {
		os.Exit(1)
	}
}

// redisCommands returns the server's total_commands_processed.
func redisCommands(addr string) int64 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "INFO stats\r\n")
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			log.Fatalf("INFO stats: %v", err)
		}
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
}

type listing struct {
	Keys []struct {
		Key      string `json:"key"`
		Count    int64  `json:"count"`
		Rejected int64  `json:"rejected"`
	} `json:"keys"`
	ActiveKeys int64 `json:"active_keys"`
}

func redisPart(light, heavy int) bool {
	tmp, err := os.MkdirTemp("", "listbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	raddr := procs.FreeAddr()
	_, rport, _ := net.SplitHostPort(raddr)
	redis := exec.Command("redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp)
	if err := redis.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
	procs.WaitUp(raddr)

	bin := filepath.Join(tmp, "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		log.Fatalf("building sluice: %v\n%s", err, out)
	}
	type gw struct{ proxy, admin string }
	var gws []gw
	for i := range 3 {
		g := gw{procs.FreeAddr(), procs.FreeAddr()}
		cfg := fmt.Sprintf(`listen: %q
admin: { listen: %q, token: bench }
log: { level: warn, access: false }
store: { backend: redis, redis: { addrs: [%q], timeout: 1s } }
policies:
  hot: { key: ["header:X-Key"], limit: 1000000000, window: 10m }
routes:
  - { name: r, match: { path_prefix: / }, respond: { body: ok }, policies: [hot] }
`, g.proxy, g.admin, raddr)
		path := filepath.Join(tmp, fmt.Sprintf("gw%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			log.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "-config", path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		procs.WaitUp(g.proxy)
		procs.WaitUp(g.admin)
		gws = append(gws, g)
	}

	// The requests: every light key once, each heavy key heavy times, in a
	// random order, spread over the gateways.
	type job struct {
		key string
		gw  int
	}
	jobs := make([]job, 0, light+heavyKeys*heavy)
	for i := range light {
		jobs = append(jobs, job{"light-" + strconv.Itoa(i), i % 3})
	}
	for h := range heavyKeys {
		for i := range heavy {
			jobs = append(jobs, job{"heavy-" + strconv.Itoa(h), i % 3})
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				req, _ := http.NewRequest("GET", "http://"+gws[jobs[i].gw].proxy+"/", nil)
				req.Header.Set("X-Key", jobs[i].key)
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					log.Fatalf("request for %s: status %d", jobs[i].key, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("redis: %d requests (%d light keys, %d heavy keys x %d) through 3 gateways in %v\n",
		len(jobs), light, heavyKeys, heavy, time.Since(start).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond) // every gateway's summary reaches Redis (about once a second)

	ok := true
	for _, n := range []int{100, 1000} {
		var slowest time.Duration
		var most int64
		var active int64
		for g, gw := range gws {
			for range 5 {
				before := redisCommands(raddr)
				t0 := time.Now()
				req, _ := http.NewRequest("GET", "http://"+gw.admin+"/v1/policies/hot/keys?limit="+strconv.Itoa(n), nil)
				req.Header.Set("Authorization", "Bearer bench")
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				took := time.Since(t0)
				cmds := redisCommands(raddr) - before - 1 // the first INFO counts itself
				slowest, most = max(slowest, took), max(most, cmds)
				var l listing
				if err := json.Unmarshal(body, &l); err != nil {
					log.Fatalf("listing: %v: %s", err, body)
				}
				active = l.ActiveKeys
				if msg := checkListing(l, n, heavy); msg != "" {
					fmt.Printf("redis: gateway %d, limit %d: %s\n", g, n, msg)
					ok = false
				}
			}
		}
		verdict := "ok"
		if slowest > 250*time.Millisecond || most > 3000 {
			verdict = "MISSED (targets 250ms, 3000 commands)"
			ok = false
		}
		fmt.Printf("redis: limit=%d on 3 gateways x 5: slowest %v, at most %d Redis commands per listing, active_keys %d (true %d): %s\n",
			n, slowest.Round(time.Microsecond), most, active, light+heavyKeys, verdict)
	}
	return ok
}

// checkListing: the heavy keys first with their exact counts, no key twice.
func checkListing(l listing, n, heavy int) string {
	seen := map[string]bool{}
	for _, k := range l.Keys {
		if seen[k.Key] {
			return "key " + strconv.Quote(k.Key) + " listed twice"
		}
		seen[k.Key] = true
	}
	if len(l.Keys) < heavyKeys {
		return fmt.Sprintf("%d keys listed, want at least %d", len(l.Keys), heavyKeys)
	}
	for i, k := range l.Keys[:heavyKeys] {
		if !strings.Contains(k.Key, "heavy-") || k.Count+k.Rejected != int64(heavy) {
			return fmt.Sprintf("key %d is %q with %d requests, want a heavy key with %d", i, k.Key, k.Count+k.Rejected, heavy)
		}
	}
	if len(l.Keys) > n {
		return fmt.Sprintf("%d keys listed, more than %d", len(l.Keys), n)
	}
	return ""
}

func memoryPart(keys, heavy int) bool {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	p := &limiter.Policy{Name: "hot", Limit: 1_000_000_000, Window: 10 * time.Minute}
	if err := p.Validate(); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	allow := func(key string) {
		if _, err := s.Allow(ctx, p, key, 1); err != nil {
			log.Fatal(err)
		}
	}
	for i := range keys {
		allow("light-" + strconv.Itoa(i))
	}
	for h := range heavyKeys {
		for range heavy {
			allow("heavy-" + strconv.Itoa(h))
		}
	}
	var slowest time.Duration
	for range 20 {
		t0 := time.Now()
		list, err := s.Keys(ctx, p, 100)
		took := time.Since(t0)
		if err != nil {
			log.Fatal(err)
		}
		slowest = max(slowest, took)
		var l listing
		for _, u := range list.Keys {
			l.Keys = append(l.Keys, struct {
				Key      string `json:"key"`
				Count    int64  `json:"count"`
				Rejected int64  `json:"rejected"`
			}{u.Key, u.Count, u.Rejected})
		}
		if msg := checkListing(l, 100, heavy); msg != "" {
			fmt.Println("memory:", msg)
			return false
		}
	}
	// Requests alone, then with listings running back to back.
	requests := func(listing bool) []time.Duration {
		stop := make(chan struct{})
		var lwg sync.WaitGroup
		if listing {
			lwg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = s.Keys(ctx, p, 100)
					}
				}
			})
		}
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 9))
				var mine []time.Duration
				for range 100_000 {
					key := "light-" + strconv.Itoa(r.IntN(keys))
					t0 := time.Now()
					allow(key)
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		close(stop)
		lwg.Wait()
		slices.Sort(lat)
		return lat
	}
	pct := func(l []time.Duration, q float64) time.Duration { return l[int(q*float64(len(l)-1))] }
	alone, during := requests(false), requests(true)
	verdict := "ok"
	if slowest > 50*time.Millisecond {
		verdict = "MISSED (target 50ms)"
	}
	fmt.Printf("memory: %d active keys: slowest listing of 100 keys %v: %s\n", keys+heavyKeys, slowest.Round(time.Microsecond), verdict)
	fmt.Printf("memory: requests alone: p50 %v p99 %v max %v; while listings run: p50 %v p99 %v max %v\n",
		pct(alone, 0.5), pct(alone, 0.99), alone[len(alone)-1], pct(during, 0.5), pct(during, 0.99), during[len(during)-1])
	return verdict == "ok"
}
