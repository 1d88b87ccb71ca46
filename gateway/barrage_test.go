package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
)

func barrageConfig(store string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
store: %s
policies:
  by-key: { key: ["header:X-Key", "query:key"], limit: 5, window: 1m }
  per-ip: { limit: 1000000, window: 1m }
routes:
  - { name: all, match: { path_prefix: / }, respond: { body: "ok\n" }, policies: [by-key, per-ip] }
`, store)
}

// hostileRequest returns the i-th raw request of the barrage.
func hostileRequest(i int) string {
	key := fmt.Sprintf("k%d", i)
	switch i % 10 {
	case 0:
		return "GET / HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\nX-Big: " + strings.Repeat("a", 256<<10) + "\r\n\r\n"
	case 1:
		return "GET / HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\n" + strings.Repeat("X-Forwarded-For: 1.2.3.4, \xff\r\n", 1000) + "\r\n"
	case 2:
		return "GET /\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\n\r\n"
	case 3:
		return "GET /%zz%G1%% HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\n\r\n"
	case 4:
		return "GET /../../etc/passwd?key=" + key + " HTTP/1.1\r\nHost: x\r\n\r\n"
	case 5:
		return "GET /" + strings.Repeat("%2e%2e/", 5000) + " HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\n\r\n"
	case 6:
		return "GET / HTTP/1.1\r\nHost: x\r\nX-Key: \xc3\x28" + key + "\r\nCookie: \x00\x01\r\n\r\n"
	case 7:
		return "GET / HTTP/1.1\r\nHost: x\r\nX-Key: " + strings.Repeat("long", 5000) + key + "\r\n\r\n"
	case 8:
		return "POST / HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\nContent-Length: 5\r\n\r\nhello"
	default:
		return "GET /?key=" + key + "&key=other HTTP/1.1\r\nHost: \xff\r\n\r\n"
	}
}

// barrage sends n hostile requests over a few keep-alive connections and
// returns the status counts; a connection the server closes is reopened.
func barrage(t *testing.T, addr string, n int, gen func(int) string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute)
	for range 8 {
		wg.Go(func() {
			var conn net.Conn
			var rd *bufio.Reader
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= n {
					break
				}
				if conn == nil {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					conn, rd = c, bufio.NewReader(c)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				status := -1
				if _, err := conn.Write([]byte(gen(i))); err == nil {
					if resp, err := http.ReadResponse(rd, nil); err == nil {
						status = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.Close {
							conn.Close()
							conn = nil
						}
					}
				}
				if status == -1 {
					conn.Close()
					conn = nil
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
			}
			if conn != nil {
				conn.Close()
			}
		})
	}
	wg.Wait()
	return counts
}

func checkNo5xx(t *testing.T, counts map[int]int) {
	t.Helper()
	for status, n := range counts {
		if status >= 500 {
			t.Errorf("%d answers with status %d", n, status)
		}
	}
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// TestBarrage sends 10,000 hostile requests and 200 oversized (1 MB) admin
// bodies: no 5xx from the gateway, and memory stays bounded by max_keys.
func TestBarrage(t *testing.T) {
	t.Parallel()
	h := startGateway(t, barrageConfig("{ backend: memory, memory: { max_keys: 2000 } }"))
	before := heapMB()
	counts := barrage(t, strings.TrimPrefix(h.proxy, "http://"), 10_000, hostileRequest)
	checkNo5xx(t, counts)
	if counts[200] < 1000 {
		t.Fatalf("only %d of 10,000 requests were served: %v", counts[200], counts)
	}
	admin := barrage(t, strings.TrimPrefix(h.admin, "http://"), 200, func(i int) string {
		body := strings.Repeat("x", 1<<20)
		return fmt.Sprintf("PUT /v1/counters/c%d HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer secret\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
	})
	checkNo5xx(t, admin)
	if admin[413] == 0 {
		t.Fatalf("1 MB admin bodies: %v, want 413s", admin)
	}
	grew := heapMB() - before
	t.Logf("proxy statuses %v; admin statuses %v; heap grew %.1f MB", counts, admin, grew)
	if grew > 64 {
		t.Fatalf("heap grew %.1f MB over the barrage", grew)
	}
	resp, body := h.adminDo("GET", "/v1/policies/by-key/keys?limit=1000", "")
	wantStatus(t, resp, body, 200)
	if n := len(decode[struct{ Keys []any }](t, body).Keys); n > 2000 {
		t.Fatalf("%d keys held, max_keys is 2000", n)
	}
}

// TestBarrageRedisKeysExpire sends distinct keys through a Redis-backed
// gateway and checks that every limiter key it wrote has a TTL.
func TestBarrageRedisKeysExpire(t *testing.T) {
	t.Parallel()
	addr := limitertest.RedisAddr(t)
	store := redisStoreConfig(addr)
	prefix := store[strings.Index(store, `prefix: "`)+len(`prefix: "`):]
	prefix = prefix[:strings.Index(prefix, `"`)]
	h := startGateway(t, barrageConfig(store))
	counts := barrage(t, strings.TrimPrefix(h.proxy, "http://"), 2_000, func(i int) string {
		return fmt.Sprintf("GET / HTTP/1.1\r\nHost: x\r\nX-Key: key-%d-\xff\r\n\r\n", i)
	})
	checkNo5xx(t, counts)
	if counts[200] != 2000 {
		t.Fatalf("statuses %v, want 2,000 x 200", counts)
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	ctx := context.Background()
	n := 0
	for _, pattern := range []string{prefix + "*", "rate:" + prefix + "*"} {
		iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
			if ttl := client.PTTL(ctx, iter.Val()).Val(); ttl <= 0 {
				t.Fatalf("key %q has no TTL (%v)", iter.Val(), ttl)
			}
		}
	}
	if n < 2000 {
		t.Fatalf("found %d keys, want at least 2,000", n)
	}
	t.Cleanup(func() {
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
}
