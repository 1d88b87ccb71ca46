package rls_test

import (
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/rls"
)

// A table in the shape of envoyproxy/ratelimit's descriptor tree, with
// Sluice policies in place of inline limits.
func ExampleTable_Lookup() {
	perIP := &limiter.Policy{Name: "per-ip", Limit: 100, Window: time.Minute}
	perUser := &limiter.Policy{Name: "per-user", Limit: 20, Window: time.Minute}
	table, err := rls.NewTable([]rls.Domain{{Name: "edge", Descriptors: []rls.Descriptor{
		{Key: "remote_address", Policy: perIP},
		{Key: "generic_key", Value: "checkout", Descriptors: []rls.Descriptor{{Key: "user", Policy: perUser}}},
	}}})
	if err != nil {
		panic(err)
	}
	for _, entries := range [][]rls.Entry{
		{{Key: "remote_address", Value: "203.0.113.7"}},
		{{Key: "generic_key", Value: "checkout"}, {Key: "user", Value: "alice"}},
		{{Key: "generic_key", Value: "search"}, {Key: "user", Value: "alice"}},
	} {
		if p, key, ok := table.Lookup("edge", entries); ok {
			fmt.Printf("%v -> %s %q\n", entries, p.Name, key)
		} else {
			fmt.Printf("%v -> not limited\n", entries)
		}
	}
	// Output:
	// [{remote_address 203.0.113.7}] -> per-ip "203.0.113.7"
	// [{generic_key checkout} {user alice}] -> per-user "descriptor:user:alice"
	// [{generic_key search} {user alice}] -> not limited
}
