package redisstore_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

var algorithms = []limiter.Algorithm{limiter.SlidingWindow, limiter.SlidingLog, limiter.FixedWindow, limiter.GCRA}

// mustFailEverywhere checks that every algorithm reports an error carrying
// want (or one of the alternatives after a '|') and admits nothing, that
// Peek fails too when peekFails is set (reads may pass where writes do
// not), and that Ping reports the server unwell when unwell is set (what
// /readyz shows).
func mustFailEverywhere(t *testing.T, o redisstore.Options, want string, peekFails, unwell bool) {
	t.Helper()
	o.BreakerThreshold = -1 // the raw replies, not the breaker's
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	s, err := redisstore.New(nil, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, alg := range algorithms {
		p := limitertest.Policy(t, "errs-"+string(alg), alg, 10, time.Minute)
		for i := range 3 {
			d, err := s.Allow(context.Background(), p, "k", 1)
			if err == nil {
				t.Fatalf("%s call %d: no error (allowed %v, remaining %d), want one carrying %q", alg, i+1, d.Allowed, d.Remaining, want)
			}
			if !containsAny(err.Error(), want) {
				t.Fatalf("%s call %d: error %q, want one carrying %q", alg, i+1, err, want)
			}
			if d.Allowed {
				t.Fatalf("%s call %d: allowed with an error", alg, i+1)
			}
		}
		if _, err := s.Peek(context.Background(), p, "k"); peekFails && err == nil {
			t.Fatalf("%s peek: no error", alg)
		}
	}
	err = s.Ping(context.Background())
	if unwell && err == nil {
		t.Fatalf("Ping: no error after %s replies, want one (readiness)", want)
	}
	if !unwell && err != nil {
		t.Fatalf("Ping: %v; a key-level error must not make the store unready", err)
	}
}

func containsAny(s, alternatives string) bool {
	for _, w := range strings.Split(alternatives, "|") {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func addrOf(port int) []string { return []string{fmt.Sprintf("127.0.0.1:%d", port)} }

// TestErrorRepliesAreErrors: every kind of Redis error reply reaches the
// caller as an error, for every algorithm, from a real redis-server set up
// to produce it.
func TestErrorRepliesAreErrors(t *testing.T) {
	t.Parallel()
	t.Run("WRONGPASS", func(t *testing.T) {
		t.Parallel()
		port := startRedis(t, "--requirepass", "right-pw")
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(port), Password: "wrong"}, "WRONGPASS", true, true)
	})
	t.Run("NOAUTH", func(t *testing.T) {
		t.Parallel()
		port := startRedis(t, "--requirepass", "right-pw")
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(port)}, "NOAUTH|unauthenticated|connection reset|EOF", true, true) // Redis drops an unauthenticated client that sends a long command: reset or EOF
	})
	t.Run("NOPERM", func(t *testing.T) {
		t.Parallel()
		// A user that may read but neither write nor run scripts.
		port := startRedis(t, "--user", "default", "off", "--user", "reader", "on", ">pw", "~*", "&*", "+@all", "-@write", "-@scripting")
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(port), Username: "reader", Password: "pw"}, "NOPERM", false, true)
	})
	t.Run("OOM", func(t *testing.T) {
		t.Parallel()
		port := startRedis(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(port)}, "OOM", false, true)
	})
	t.Run("READONLY", func(t *testing.T) {
		t.Parallel()
		master := startRedis(t)
		replica := startRedis(t, "--replicaof", "127.0.0.1", fmt.Sprint(master))
		waitReplicaSynced(t, replica)
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(replica)}, "READONLY", false, true)
	})
	t.Run("LOADING", func(t *testing.T) {
		t.Parallel()
		port := startLoadingRedis(t)
		mustFailEverywhere(t, redisstore.Options{Addrs: addrOf(port)}, "LOADING", true, true)
	})
	t.Run("WRONGTYPE (script error)", func(t *testing.T) {
		t.Parallel()
		port := startRedis(t)
		o := redisstore.Options{Addrs: addrOf(port), Timeout: time.Second}
		s, err := redisstore.New(nil, o)
		if err != nil {
			t.Fatal(err)
		}
		// Create every algorithm's keys, then turn each into a string.
		for _, alg := range algorithms {
			p := limitertest.Policy(t, "errs-"+string(alg), alg, 10, time.Minute)
			limitertest.MustAllow(t, s, p, "k", 1)
		}
		s.Close()
		c := redis.NewClient(&redis.Options{Addr: addrOf(port)[0]})
		defer c.Close()
		ctx := context.Background()
		keys, err := c.Keys(ctx, "*errs-*").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, k := range keys {
			if strings.HasSuffix(k, ":rej") || strings.Contains(k, "idx:") {
				continue
			}
			n++
			if err := c.Set(ctx, k, "not a limiter", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if n != len(algorithms) {
			t.Fatalf("found %d limiter keys %q, want %d", n, keys, len(algorithms))
		}
		// A script may also fail in Lua on a string where it wants a number.
		mustFailEverywhere(t, o, "WRONGTYPE|user_script", true, false)
	})
}

func waitReplicaSynced(t *testing.T, port int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addrOf(port)[0]})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the replica did not sync within 10s")
}

// startLoadingRedis starts a redis-server that stays in the LOADING state
// for the rest of the test: it loads an RDB of 20,000 keys with a delay of
// 1ms per key (key-load-delay) and answers clients every 1KB loaded.
func startLoadingRedis(t *testing.T) int {
	t.Helper()
	bin := redisServer(t)
	dir := t.TempDir()
	port := startRedisIn(t, bin, dir)
	c := redis.NewClient(&redis.Options{Addr: addrOf(port)[0]})
	pipe := c.Pipeline()
	for i := range 20000 {
		pipe.Set(context.Background(), fmt.Sprint("filler:", i), "v", 0)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Shutdown(context.Background()).Err()
	c.Close()
	port = startRedisIn(t, bin, dir, "--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")
	c = redis.NewClient(&redis.Options{Addr: addrOf(port)[0]})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING") {
		t.Fatalf("the server is not loading: PING says %v", err)
	}
	return port
}

// startRedisIn starts a redis-server that keeps its RDB in dir.
func startRedisIn(t *testing.T, bin, dir string, args ...string) int {
	t.Helper()
	port := freePort(t)
	full := append([]string{"--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--appendonly", "no", "--save", "",
		"--dir", dir, "--dbfilename", "dump.rdb", "--logfile", filepath.Join(dir, fmt.Sprint(port, ".log"))}, args...)
	cmd := exec.Command(bin, full...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitPort(t, port)
	return port
}
