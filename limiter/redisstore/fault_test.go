package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

const faultTimeout = 100 * time.Millisecond

// margin is what a call may take beyond the store timeout on a loaded CI
// machine (150ms was missed with several race-detector suites sharing two
// cores). These tests show that a failing Redis never hangs a call; that a
// call is bounded by one timeout and not two is shown with tighter bounds
// in batch_test.go.
const margin = 300 * time.Millisecond

func timedAllow(s limiter.Store, p *limiter.Policy) (limiter.Decision, time.Duration, error) {
	start := time.Now()
	d, err := s.Allow(context.Background(), p, "k", 1)
	return d, time.Since(start), err
}

// waitHealthy polls until a call succeeds and returns how long that took.
func waitHealthy(t *testing.T, s limiter.Store, p *limiter.Policy, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if _, _, err := timedAllow(s, p); err == nil {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the store did not recover within %v", within)
	return 0
}

func TestFaultsThroughProxy(t *testing.T) {
	t.Parallel()
	fp, err := faultproxy.Start(limitertest.RedisAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{fp.Addr()}, Timeout: faultTimeout, Prefix: randomPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "faults", limiter.SlidingWindow, 1_000_000, time.Minute)

	if _, took, err := timedAllow(s, p); err != nil {
		t.Fatalf("healthy: %v (%v)", err, took)
	}

	t.Run("latency under the timeout", func(t *testing.T) {
		fp.SetLatency(20 * time.Millisecond)
		defer fp.SetLatency(0)
		_, took, err := timedAllow(s, p)
		if err != nil || took < 20*time.Millisecond {
			t.Fatalf("with 20ms latency: %v after %v", err, took)
		}
	})

	t.Run("pause: bounded failures, then the breaker", func(t *testing.T) {
		fp.Pause()
		var fast int
		for i := range 20 {
			_, took, err := timedAllow(s, p)
			if err == nil {
				t.Fatalf("call %d succeeded against a paused Redis", i)
			}
			if took > faultTimeout+margin {
				t.Fatalf("call %d took %v with a %v timeout", i, took, faultTimeout)
			}
			if errors.Is(err, redisstore.ErrUnavailable) {
				fast++
				if took > 20*time.Millisecond {
					t.Fatalf("an open breaker took %v to answer", took)
				}
			}
		}
		if fast < 10 {
			t.Fatalf("only %d of 20 calls were answered by the open breaker", fast)
		}
		if err := s.Ping(context.Background()); err == nil {
			t.Fatal("Ping succeeded against a paused Redis")
		}
		fp.Resume()
		if took := waitHealthy(t, s, p, 2*time.Second); took > time.Second {
			t.Fatalf("recovered %v after Redis came back, want within 1s", took)
		}
	})

	t.Run("dropped connections", func(t *testing.T) {
		fp.DropAll()
		fp.Refuse(true)
		for range 8 {
			if _, took, err := timedAllow(s, p); err == nil || took > faultTimeout+margin {
				t.Fatalf("refused: err %v after %v", err, took)
			}
		}
		fp.Refuse(false)
		if took := waitHealthy(t, s, p, 2*time.Second); took > time.Second {
			t.Fatalf("recovered %v after connections were accepted again", took)
		}
	})
}

// TestKillAndRestartRedis kills a real redis-server and starts it again on
// the same port.
func TestKillAndRestartRedis(t *testing.T) {
	t.Parallel()
	bin := redisServer(t)
	port := freePort(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitPort(t, port)
		return cmd
	}
	cmd := start()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s, err := redisstore.New(nil, redisstore.Options{Addrs: []string{addr}, Timeout: faultTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := limitertest.Policy(t, "restart", limiter.SlidingLog, 3, time.Hour)
	for range 3 {
		if d, _, err := timedAllow(s, p); err != nil || !d.Allowed {
			t.Fatalf("before the kill: %+v %v", d, err)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for range 10 {
		if _, took, err := timedAllow(s, p); err == nil || took > faultTimeout+margin {
			t.Fatalf("Redis killed: err %v after %v", err, took)
		}
	}
	cmd = start()
	if took := waitHealthy(t, s, p, 3*time.Second); took > time.Second {
		t.Fatalf("recovered %v after Redis restarted, want within 1s", took)
	}
	// The restarted server kept nothing, so the key starts afresh.
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	if n := client.DBSize(context.Background()).Val(); n == 0 {
		t.Fatal("no keys after recovery")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %d after 5s", port)
}

// redisServer returns the path of redis-server for tests that run their
// own, skipping like the other real-Redis tests.
func redisServer(t *testing.T) string {
	t.Helper()
	limitertest.RedisAddr(t) // the real-Redis switch
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SLUICE_TEST_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	return bin
}
