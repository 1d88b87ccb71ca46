package limitertest

import (
	"os"
	"strings"
	"testing"
)

// RedisAddr returns the address of the real Redis named by SLUICE_TEST_REDIS.
// Without it the test is skipped, or fails when SLUICE_TEST_REQUIRE_REDIS=1.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("SLUICE_TEST_REDIS")
	if addr == "" {
		missing(tb, "SLUICE_TEST_REDIS")
	}
	return addr
}

// ClusterAddrs returns the seed addresses of the real Redis Cluster named by
// SLUICE_TEST_REDIS_CLUSTER (comma-separated), skipping or failing like
// RedisAddr.
func ClusterAddrs(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv("SLUICE_TEST_REDIS_CLUSTER")
	if v == "" {
		missing(tb, "SLUICE_TEST_REDIS_CLUSTER")
	}
	return strings.Split(v, ",")
}

func missing(tb testing.TB, name string) {
	tb.Helper()
	if os.Getenv("SLUICE_TEST_REQUIRE_REDIS") == "1" {
		tb.Fatalf("%s is not set and SLUICE_TEST_REQUIRE_REDIS=1", name)
	}
	tb.Skipf("%s is not set; skipping the real-Redis test", name)
}
