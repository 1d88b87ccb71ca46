package version_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/version"
)

func TestGet(t *testing.T) {
	v := version.Get()
	if v.Version == "" || v.Revision == "" || v.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", v)
	}
	if s := v.String(); !strings.HasPrefix(s, "sluice "+v.Version) || !strings.Contains(s, v.GoVersion) {
		t.Fatalf("String() = %q", s)
	}
}
