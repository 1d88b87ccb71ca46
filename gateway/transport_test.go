package gateway_test

import (
	"testing"
)

// forEachTransport runs test once per upstream transport, in parallel
// subtests named after them.
func forEachTransport(t *testing.T, test func(t *testing.T, transport string)) {
	t.Parallel()
	for _, tr := range []string{"fast", "standard"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			test(t, tr)
		})
	}
}

// withTransport sets upstream_transport in a config.
func withTransport(transport, cfg string) string {
	return "upstream_transport: " + transport + "\n" + cfg
}
