package rls_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering checks that users who import only limiter or middleware do
// not download gRPC: `go list -deps ./middleware ./limiter/...` names no
// gRPC, protobuf or Envoy package, while this package's does.
func TestLayering(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	list := func(pkgs ...string) []string {
		t.Helper()
		cmd := exec.Command(goBin, append([]string{"list", "-deps"}, pkgs...)...)
		cmd.Dir = ".."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", pkgs, err)
		}
		return strings.Fields(string(out))
	}
	heavy := func(pkg string) bool {
		for _, p := range []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/envoyproxy/"} {
			if strings.HasPrefix(pkg, p) {
				return true
			}
		}
		return false
	}
	light := list("./middleware", "./limiter/...")
	if !strings.Contains(strings.Join(light, " "), "github.com/sluice-gateway/sluice/limiter/redisstore") {
		t.Fatalf("go list named %d packages, not the limiter's stores", len(light))
	}
	for _, pkg := range light {
		if heavy(pkg) {
			t.Errorf("middleware or limiter depends on %s", pkg)
		}
	}
	n := 0
	for _, pkg := range list("./rls") {
		if heavy(pkg) {
			n++
		}
	}
	if n == 0 {
		t.Fatal("./rls lists no gRPC package: the check above could not see one")
	}
}
