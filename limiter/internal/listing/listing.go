// Package listing holds the order the stores list keys in. It is internal:
// users see it in Store.Keys, and need not call it.
package listing

import (
	"cmp"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/limiter"
)

// Sort orders usages busiest first (most Requests), then by key.
func Sort(u []limiter.Usage) {
	slices.SortFunc(u, func(a, b limiter.Usage) int {
		if a, b := a.Requests(), b.Requests(); a != b {
			return cmp.Compare(b, a)
		}
		return strings.Compare(a.Key, b.Key)
	})
}
