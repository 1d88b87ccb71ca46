package gateway_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway"
)

func TestAdminClient(t *testing.T) {
	t.Parallel()
	h := startGateway(t, proxyConfig("http://127.0.0.1:1", "{ backend: memory }"))
	admin := strings.TrimPrefix(h.admin, "http://")
	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		full := append([]string{args[0], "-admin", admin, "-token", "secret"}, args[1:]...)
		if code := gateway.Main(full, &out, &errOut); code != want {
			t.Fatalf("sluice %v: exit %d, want %d; %s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	for range 3 {
		h.get("/keyed", "X-API-Key", "2001:db8::/64")
	}
	h.get("/keyed", "X-API-Key", "bob")
	out := run(0, "keys", "top", "by-key")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "2001:db8::/64") || !strings.Contains(lines[1], " 2 ") {
		t.Fatalf("keys top:\n%s", out)
	}
	if out := run(0, "keys", "get", "by-key", "2001:db8::/64"); !strings.Contains(out, `"rejected":1`) {
		t.Fatalf("keys get: %s", out)
	}
	run(0, "keys", "reset", "by-key", "2001:db8::/64")
	if out := run(0, "keys", "get", "by-key", "2001:db8::/64"); !strings.Contains(out, `"count":0`) {
		t.Fatalf("after reset: %s", out)
	}
	run(0, "counters", "set", "seats", "1", "-max", "3")
	run(0, "counters", "incr", "seats", "2")
	if out := run(1, "counters", "incr", "seats"); !strings.Contains(out, "409") {
		t.Fatalf("incr past max: %s", out)
	}
	if out := run(0, "counters", "decr", "seats"); !strings.Contains(out, `"value":2`) {
		t.Fatalf("decr: %s", out)
	}
	if out := run(0, "counters", "list"); !strings.Contains(out, `"seats"`) {
		t.Fatalf("list: %s", out)
	}
	run(0, "counters", "delete", "seats")
	run(1, "counters", "get", "seats")
	run(2, "counters", "frobnicate")
	var out2, err2 bytes.Buffer
	if code := gateway.Main([]string{"keys", "-admin", admin, "-token", "wrong", "top", "by-key"}, &out2, &err2); code != 1 || !strings.Contains(err2.String(), "401") {
		t.Fatalf("wrong token: exit %d %s", code, err2.String())
	}
}
